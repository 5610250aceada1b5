package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The full mode's negotiation: NBD_OPT_LIST, NBD_OPT_INFO and NBD_OPT_GO,
// NBD_OPT_STRUCTURED_REPLY and the meta-context options. Server.option
// sends every option here once TLS, if required, is up.

// allocationContext is the one meta context the server offers; a selected
// one is always context ID allocationID.
const (
	allocationContext        = "base:allocation"
	allocationID      uint32 = 1
)

// Block sizes the full mode advertises in NBD_INFO_BLOCK_SIZE: any byte
// offset and length, 64 KiB preferred (a VM disk's chunk), requests of up
// to maxServerRequest.
const (
	minBlock       = 1
	preferredBlock = 64 << 10
)

// metaSelection is what NBD_OPT_SET_META_CONTEXT selected, and for which
// export name: choosing another export drops it, as the protocol requires.
type metaSelection struct {
	name       string
	allocation bool
}

// transFlags are the transmission flags the export is offered with.
func (sc *serverConn) transFlags() uint16 {
	f := transHasFlags | transReadOnly
	if !sc.s.Full {
		return f
	}
	f |= transSendFlush | transCanMultiConn | transSendCache
	if sc.structured {
		f |= transSendDF
	}
	return f
}

// fullOption answers the options only the full mode knows.
func (sc *serverConn) fullOption(opt uint32, data []byte) (ServerExport, error) {
	switch opt {
	case optList:
		return nil, sc.list(data)
	case optInfo, optGo:
		return sc.info(opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return nil, sc.replyOptionMsg(opt, repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data")
		}
		sc.structured = true
		return nil, sc.replyOption(opt, repAck)
	case optListMetaContext, optSetMetaContext:
		return nil, sc.metaContext(opt, data)
	}
	return nil, sc.replyOption(opt, repErrUnsup)
}

// replyOptionMsg sends an option reply whose payload is msg.
func (sc *serverConn) replyOptionMsg(opt, typ uint32, msg string) error {
	return sc.replyOptionData(opt, typ, []byte(msg))
}

func (sc *serverConn) replyOptionData(opt, typ uint32, data []byte) error {
	b := make([]byte, optReplyLen+len(data))
	binary.BigEndian.PutUint64(b[0:], magicOptReply)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	copy(b[optReplyLen:], data)
	if _, err := sc.conn.Write(b); err != nil {
		return fmt.Errorf("answering option %d: %w", opt, err)
	}
	return nil
}

// list answers NBD_OPT_LIST with one NBD_REP_SERVER per export List names.
func (sc *serverConn) list(data []byte) error {
	switch {
	case len(data) != 0:
		return sc.replyOptionMsg(optList, repErrInvalid, "NBD_OPT_LIST takes no data")
	case sc.s.List == nil:
		return sc.replyOption(optList, repErrPolicy)
	}
	names, err := sc.s.List(sc.s.ctx)
	if err != nil {
		sc.s.logf("nbd: listing the exports for %s: %v", sc.conn.RemoteAddr(), err)
		return sc.replyOptionMsg(optList, repErrPolicy, "the server could not list its exports")
	}
	for _, name := range names {
		if len(name) > maxNameLen || !utf8.ValidString(name) {
			sc.s.logf("nbd: not listing export %q: not a valid NBD export name", RedactName(name))
			continue
		}
		b := make([]byte, 4+len(name))
		binary.BigEndian.PutUint32(b, uint32(len(name)))
		copy(b[4:], name)
		if err := sc.replyOptionData(optList, repServer, b); err != nil {
			return err
		}
	}
	return sc.replyOption(optList, repAck)
}

// parseInfoRequest reads NBD_OPT_INFO's and NBD_OPT_GO's data: the export
// name, then the information requests, which the server does not need (it
// always sends NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE).
func parseInfoRequest(data []byte) (string, error) {
	if len(data) < 6 {
		return "", fmt.Errorf("%d bytes of data, fewer than the 6 the option needs", len(data))
	}
	n := uint64(binary.BigEndian.Uint32(data))
	if n > uint64(len(data)-6) {
		return "", fmt.Errorf("an export name of %d bytes in %d bytes of data", n, len(data))
	}
	reqs := uint64(binary.BigEndian.Uint16(data[4+n:]))
	if uint64(len(data)) != 4+n+2+2*reqs {
		return "", fmt.Errorf("%d information requests in %d bytes of data", reqs, len(data))
	}
	return string(data[4 : 4+n]), nil
}

// info answers NBD_OPT_INFO and NBD_OPT_GO; GO returns the export opened.
func (sc *serverConn) info(opt uint32, data []byte) (ServerExport, error) {
	name, err := parseInfoRequest(data)
	if err != nil {
		return nil, sc.replyOptionMsg(opt, repErrInvalid, "malformed request: "+err.Error())
	}
	exp, err := sc.s.Open(sc.s.ctx, name)
	if err == nil && exp.Size() < 0 {
		exp.Close()
		err = errors.New("the export reports a negative size")
	}
	if err != nil {
		sc.s.logf("nbd: connection from %s: opening export %q: %v", sc.conn.RemoteAddr(), RedactName(name), err)
		return nil, sc.replyOptionMsg(opt, repErrUnknown, fmt.Sprintf(
			"export %q is not available on this server: check the name against its list (nbdinfo --list)", RedactName(name)))
	}
	if err := sc.sendInfo(opt, exp); err != nil {
		exp.Close()
		return nil, err
	}
	if opt == optInfo {
		// Closed before the ACK, so a client that sees the ACK knows the
		// export is released.
		cerr := exp.Close()
		if err := sc.replyOption(opt, repAck); err != nil {
			return nil, err
		}
		return nil, cerr
	}
	if err := sc.replyOption(opt, repAck); err != nil {
		exp.Close()
		return nil, err
	}
	if sc.meta.name != name {
		sc.meta = metaSelection{}
	}
	return exp, nil
}

// sendInfo sends NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE; the caller sends the ACK.
func (sc *serverConn) sendInfo(opt uint32, exp ServerExport) error {
	var e [12]byte
	binary.BigEndian.PutUint16(e[0:], infoExport)
	binary.BigEndian.PutUint64(e[2:], uint64(exp.Size()))
	binary.BigEndian.PutUint16(e[10:], sc.transFlags())
	if err := sc.replyOptionData(opt, repInfo, e[:]); err != nil {
		return err
	}
	var bs [14]byte
	binary.BigEndian.PutUint16(bs[0:], infoBlockSize)
	binary.BigEndian.PutUint32(bs[2:], minBlock)
	binary.BigEndian.PutUint32(bs[6:], preferredBlock)
	binary.BigEndian.PutUint32(bs[10:], maxServerRequest)
	return sc.replyOptionData(opt, repInfo, bs[:])
}

// parseMetaRequest reads the meta-context options' data: an export name,
// then queries, each a length and a string.
func parseMetaRequest(data []byte) (name string, queries []string, err error) {
	next := func(what string) (string, error) {
		if len(data) < 4 {
			return "", fmt.Errorf("the data ends before the length of the %s", what)
		}
		n := binary.BigEndian.Uint32(data)
		if uint64(n) > uint64(len(data)-4) {
			return "", fmt.Errorf("a %s of %d bytes in the %d bytes left", what, n, len(data)-4)
		}
		s := string(data[4 : 4+n])
		data = data[4+n:]
		return s, nil
	}
	if name, err = next("export name"); err != nil {
		return "", nil, err
	}
	if len(data) < 4 {
		return "", nil, errors.New("the data ends before the number of queries")
	}
	count := binary.BigEndian.Uint32(data)
	data = data[4:]
	if uint64(count) > uint64(len(data)/4) {
		return "", nil, fmt.Errorf("%d queries in the %d bytes left", count, len(data))
	}
	for range count {
		q, err := next("query")
		if err != nil {
			return "", nil, err
		}
		queries = append(queries, q)
	}
	if len(data) != 0 {
		return "", nil, fmt.Errorf("%d bytes after the last query", len(data))
	}
	return name, queries, nil
}

// metaContext answers NBD_OPT_LIST_META_CONTEXT and _SET_META_CONTEXT;
// "base:allocation" is the only context (and "base:" lists it).
func (sc *serverConn) metaContext(opt uint32, data []byte) error {
	if opt == optSetMetaContext {
		sc.meta = metaSelection{}
	}
	if !sc.structured {
		return sc.replyOptionMsg(opt, repErrInvalid, "negotiate NBD_OPT_STRUCTURED_REPLY first")
	}
	name, queries, err := parseMetaRequest(data)
	if err != nil {
		return sc.replyOptionMsg(opt, repErrInvalid, "malformed request: "+err.Error())
	}
	match := opt == optListMetaContext && len(queries) == 0
	for _, q := range queries {
		match = match || q == allocationContext || (opt == optListMetaContext && q == "base:")
	}
	if match {
		id := uint32(0)
		if opt == optSetMetaContext {
			id = allocationID
			sc.meta = metaSelection{name: name, allocation: true}
		}
		b := make([]byte, 4+len(allocationContext))
		binary.BigEndian.PutUint32(b, id)
		copy(b[4:], allocationContext)
		if err := sc.replyOptionData(opt, repMetaContext, b); err != nil {
			return err
		}
	}
	return sc.replyOption(opt, repAck)
}
