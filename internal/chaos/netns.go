package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
)

// netns puts every process of the cluster in a network namespace of its
// own, each joined by a veth pair to one bridge that the harness (and its
// clients) also sits on. Cutting a node's link partitions it from
// everyone, in both directions, whatever the protocol: Raft, forwarding,
// heartbeats and client traffic alike. It needs root and iproute2; without
// them the harness runs without partitions.
type netns struct {
	prefix string // names: short and unique per run
	subnet string // the first three octets of a /24
	bridge string
	nodes  map[string]nsNode
}

type nsNode struct {
	ns, veth, ip string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetns creates the bridge and one namespace per name.
func newNetns(names []string) (*netns, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("network namespaces need iproute2's ip")
	}
	id := rand.Uint32()
	n := &netns{
		prefix: fmt.Sprintf("rc%04x", id&0xffff),
		subnet: fmt.Sprintf("10.%d.%d", 200+id>>16%50, id>>8%250+1),
		nodes:  map[string]nsNode{},
	}
	n.bridge = n.prefix + "br"
	record("link", n.bridge)
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", n.subnet + ".1/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		node := nsNode{ns: n.prefix + "-" + name, veth: fmt.Sprintf("%sv%d", n.prefix, i), ip: fmt.Sprintf("%s.%d", n.subnet, 10+i)}
		peer := fmt.Sprintf("%sp%d", n.prefix, i)
		n.nodes[name] = node
		record("netns", node.ns)
		record("link", node.veth)
		for _, args := range [][]string{
			{"netns", "add", node.ns},
			{"link", "add", node.veth, "type", "veth", "peer", "name", peer},
			{"link", "set", peer, "netns", node.ns},
			{"link", "set", node.veth, "master", n.bridge},
			{"link", "set", node.veth, "up"},
			{"netns", "exec", node.ns, "ip", "link", "set", "lo", "up"},
			{"netns", "exec", node.ns, "ip", "link", "set", peer, "name", "eth0"},
			{"netns", "exec", node.ns, "ip", "addr", "add", node.ip + "/24", "dev", "eth0"},
			{"netns", "exec", node.ns, "ip", "link", "set", "eth0", "up"},
		} {
			if err := ipCmd(args...); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return n, nil
}

// wrap runs bin with args inside name's namespace (ip netns exec execs
// the command in its own process: the pid is the program's).
func (n *netns) wrap(name, bin string, args []string) (string, []string) {
	return "ip", append([]string{"netns", "exec", n.nodes[name].ns, bin}, args...)
}

// cut partitions name from everyone; heal joins it again.
func (n *netns) cut(name string) error  { return ipCmd("link", "set", n.nodes[name].veth, "down") }
func (n *netns) heal(name string) error { return ipCmd("link", "set", n.nodes[name].veth, "up") }

// close removes the namespaces (and with them the veth pairs) and the
// bridge. It is safe to call on a half-built netns.
func (n *netns) close() {
	for _, node := range n.nodes {
		ipCmd("netns", "del", node.ns)
		ipCmd("link", "del", node.veth) // gone with the namespace, normally
	}
	ipCmd("link", "del", n.bridge)
}
