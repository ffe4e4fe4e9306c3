# Shared by the scripts that measure or compare RAIS-FS against Dovecot:
# sourced, not run. Needs root (Dovecot runs from a private config) and
# Debian's dovecot-imapd and dovecot-lmtpd (installed if missing).
#
#   mail_setup               work dir ($work), rais built into $work/bin
#   dovecot_start NAME [CF]  a Dovecot of its own under $work/NAME on loopback
#                            ($dimap, $dlmtp), user demo/demo, CF added to its config
#   raisdev_start            rais dev under $work/cluster ($rimap, $rlmtp)
#
# Everything started is stopped and $work removed on exit.

mail_setup() {
	if ! command -v dovecot >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd dovecot-lmtpd >/dev/null
	fi
	work=$(mktemp -d /tmp/mailcmp.XXXXXX)
	chmod 755 "$work"
	mkdir -p "$work/bin" && go build -o "$work/bin/rais" ./cmd/rais
	dev=""
	trap mail_cleanup EXIT
}

mail_cleanup() {
	if [ -n "$dev" ]; then
		kill -INT "$dev" 2>/dev/null || true
		wait "$dev" 2>/dev/null || true
	fi
	for conf in "$work"/*/dovecot.conf; do
		[ -e "$conf" ] || continue
		doveadm -c "$conf" stop 2>/dev/null || kill "$(cat "$(dirname "$conf")/run/master.pid" 2>/dev/null)" 2>/dev/null || true
	done
	rm -rf "$work"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

dovecot_start() {
	local d="$work/$1"
	dimap=$(port); dlmtp=$(port)
	mkdir -p "$d/run" "$d/mail"
	chown nobody:nogroup "$d/mail"
	echo "demo:{PLAIN}demo" > "$d/passwd"
	cat > "$d/dovecot.conf" <<CONF
base_dir = $d/run
log_path = $d/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# LMTP recipients as demo@localhost (the user is the local part), as RAIS-FS takes them
auth_username_format = %Ln
first_valid_uid = 1
mail_location = maildir:$d/mail/%u
passdb {
  driver = passwd-file
  args = $d/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$d/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $dimap
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $dlmtp
  }
  unix_listener lmtp {
    mode = 0600
  }
}
service imap {
  process_limit = 64
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Trash {
    special_use = \\Trash
  }
  mailbox Junk {
    special_use = \\Junk
  }
}
CONF
	if [ -n "${2:-}" ]; then
		echo "$2" >>"$d/dovecot.conf"
	fi
	dovecot -c "$d/dovecot.conf"
}

raisdev_start() {
	"$work/bin/rais" dev --dir "$work/cluster" >"$work/dev.out" 2>&1 &
	dev=$!
	for _ in $(seq 100); do grep -q RAIS_LMTP= "$work/dev.out" && break; sleep 0.2; done
	rimap=$(sed -n 's/^RAIS_IMAP=//p' "$work/dev.out")
	rlmtp=$(sed -n 's/^RAIS_LMTP=//p' "$work/dev.out")
	if [ -z "$rimap" ] || [ -z "$rlmtp" ]; then
		echo "rais dev did not start:"; cat "$work/dev.out"; exit 1
	fi
	sleep 2 # a leader and live chunk servers
}
