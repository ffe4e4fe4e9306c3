package raftfsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/raisfs/raisfs/api/txnpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// Encode builds the log-entry bytes for one command, stamped with the
// proposer's clock (now, in Unix nanoseconds) and the current encoding
// version. op is one of the fsmpb.Command_* oneof wrappers.
func Encode(now int64, op any) ([]byte, error) {
	cmd := &fsmpb.Command{Version: CommandVersion, NowUnixNano: now}
	switch o := op.(type) {
	case *fsmpb.PutObject:
		cmd.Op = &fsmpb.Command_PutObject{PutObject: o}
	case *fsmpb.PutObjects:
		cmd.Op = &fsmpb.Command_PutObjects{PutObjects: o}
	case *fsmpb.DeleteObject:
		cmd.Op = &fsmpb.Command_DeleteObject{DeleteObject: o}
	case *fsmpb.CreateVolume:
		cmd.Op = &fsmpb.Command_CreateVolume{CreateVolume: o}
	case *fsmpb.SetVolumeState:
		cmd.Op = &fsmpb.Command_SetVolumeState{SetVolumeState: o}
	case *fsmpb.UpsertServer:
		cmd.Op = &fsmpb.Command_UpsertServer{UpsertServer: o}
	case *fsmpb.SetServerState:
		cmd.Op = &fsmpb.Command_SetServerState{SetServerState: o}
	case *fsmpb.BlobGone:
		cmd.Op = &fsmpb.Command_BlobGone{BlobGone: o}
	case *fsmpb.SetClass:
		cmd.Op = &fsmpb.Command_SetClass{SetClass: o}
	case *fsmpb.InitCluster:
		cmd.Op = &fsmpb.Command_InitCluster{InitCluster: o}
	case *fsmpb.SetMaster:
		cmd.Op = &fsmpb.Command_SetMaster{SetMaster: o}
	case *fsmpb.QueueDelete:
		cmd.Op = &fsmpb.Command_QueueDelete{QueueDelete: o}
	case *txnpb.Txn:
		cmd.Op = &fsmpb.Command_Txn{Txn: o}
	default:
		return nil, fmt.Errorf("encode command: unknown op %T", op)
	}
	return proto.Marshal(cmd)
}
