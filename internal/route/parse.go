package route

import (
	"fmt"
	"net"
	"strconv"
)

// ParseShards reads a CLUSTER SHARDS reply (Redis 7.0+), RESP2 form: per
// shard a flat array "slots" [start end …] "nodes" [per node a flat array of
// "id" "port" "tls-port" "ip" "endpoint" "role" "health" …]. With tls the
// nodes' "tls-port" is used (a TLS-only node has no "port"). Nodes not
// online are left out.
func ParseShards(reply any, tls bool) ([]ShardInfo, error) {
	shards, ok := reply.([]any)
	if !ok {
		return nil, fmt.Errorf("CLUSTER SHARDS: unexpected reply %T", reply)
	}
	var out []ShardInfo
	for _, sh := range shards {
		fields, err := pairs(sh)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER SHARDS: %w", err)
		}
		var info ShardInfo
		slots, _ := fields["slots"].([]any)
		for i := 0; i+1 < len(slots); i += 2 {
			start, err1 := asInt(slots[i])
			end, err2 := asInt(slots[i+1])
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("CLUSTER SHARDS: bad slot range %v-%v", slots[i], slots[i+1])
			}
			info.Slots = append(info.Slots, [2]int{start, end})
		}
		nodes, _ := fields["nodes"].([]any)
		for _, n := range nodes {
			nf, err := pairs(n)
			if err != nil {
				return nil, fmt.Errorf("CLUSTER SHARDS: %w", err)
			}
			if str(nf["health"]) != "online" {
				continue
			}
			host := str(nf["ip"])
			if host == "" {
				host = str(nf["endpoint"])
			}
			portField := "port"
			if tls {
				portField = "tls-port"
			}
			port, err := asInt(nf[portField])
			if err != nil || host == "" {
				continue // a node without an address for this transport is unusable
			}
			addr := net.JoinHostPort(host, strconv.Itoa(port))
			if str(nf["role"]) == "master" {
				info.Primary = addr
			} else {
				info.Replicas = append(info.Replicas, addr)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// ParseSlots reads a CLUSTER SLOTS reply: per range [start end [ip port id]
// [replica ip port id] …].
func ParseSlots(reply any) ([]ShardInfo, error) {
	ranges, ok := reply.([]any)
	if !ok {
		return nil, fmt.Errorf("CLUSTER SLOTS: unexpected reply %T", reply)
	}
	byPrimary := map[string]*ShardInfo{}
	var order []string
	for _, r := range ranges {
		rg, ok := r.([]any)
		if !ok || len(rg) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS: bad range %v", r)
		}
		start, err1 := asInt(rg[0])
		end, err2 := asInt(rg[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("CLUSTER SLOTS: bad range %v", r)
		}
		var addrs []string
		for _, n := range rg[2:] {
			nd, ok := n.([]any)
			if !ok || len(nd) < 2 {
				return nil, fmt.Errorf("CLUSTER SLOTS: bad node %v", n)
			}
			port, err := asInt(nd[1])
			if err != nil {
				return nil, fmt.Errorf("CLUSTER SLOTS: bad port %v", nd[1])
			}
			addrs = append(addrs, net.JoinHostPort(str(nd[0]), strconv.Itoa(port)))
		}
		s := byPrimary[addrs[0]]
		if s == nil {
			s = &ShardInfo{Primary: addrs[0], Replicas: addrs[1:]}
			byPrimary[addrs[0]] = s
			order = append(order, addrs[0])
		}
		s.Slots = append(s.Slots, [2]int{start, end})
	}
	out := make([]ShardInfo, 0, len(order))
	for _, p := range order {
		out = append(out, *byPrimary[p])
	}
	return out, nil
}

// pairs reads a flat key/value array into a map.
func pairs(v any) (map[string]any, error) {
	arr, ok := v.([]any)
	if !ok || len(arr)%2 != 0 {
		return nil, fmt.Errorf("expected a key/value array, got %T", v)
	}
	m := make(map[string]any, len(arr)/2)
	for i := 0; i < len(arr); i += 2 {
		m[str(arr[i])] = arr[i+1]
	}
	return m, nil
}

func str(v any) string {
	switch s := v.(type) {
	case []byte:
		return string(s)
	case string:
		return s
	}
	return ""
}

func asInt(v any) (int, error) {
	switch n := v.(type) {
	case int64:
		return int(n), nil
	case []byte:
		return strconv.Atoi(string(n))
	}
	return 0, fmt.Errorf("not an integer: %T", v)
}
