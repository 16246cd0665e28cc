#!/usr/bin/env bash
# demo.sh runs every example program (examples/<name>/main.go) against
# throwaway redis-servers on free loopback ports.
#
# Every example gets REDIS_ADDR=127.0.0.1:<port> of a standalone server
# (flushed before each example) that has one replica, so that WAIT 1 is
# acknowledged. If an example's directory name starts with
# "cluster", a three-primary Redis Cluster is started too and its node
# addresses are exported as REDIS_CLUSTER_ADDRS (comma-separated).
#
# The servers persist nothing, live in a temporary directory and are stopped
# by PID when the script exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	bash scripts/ensure-redis.sh

workdir=$(mktemp -d "${TMPDIR:-/tmp}/rbatch-demo.XXXXXX")
pids=()

# alive PID: whether the process runs (an exited, unreaped child is a zombie
# that kill -0 still finds).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	if [ -r "/proc/$1/stat" ]; then
		local stat
		stat=$(<"/proc/$1/stat") || return 1
		stat=${stat##*) }
		[ "${stat%% *}" != Z ]
	fi
}

cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	# Give the servers 5 s to shut down, then kill what is left.
	for _ in $(seq 50); do
		local running=
		for pid in "${pids[@]}"; do
			alive "$pid" && running=1
		done
		[ -z "$running" ] && break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		alive "$pid" && kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_server NAME [ARGS...]: starts redis-server on a free port in
# 10000-22767, so that port+10000 (a cluster node's bus port) stays below the
# kernel's ephemeral range too, and sets $port. Retries with another port when
# the chosen one was taken.
start_server() {
	local name=$1
	shift
	local dir pid
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		port=$((10000 + RANDOM % 12768))
		port_free "$port" && port_free $((port + 10000)) || continue
		dir="$workdir/$name-$port"
		mkdir -p "$dir"
		redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
			--daemonize no --dir "$dir" --logfile "" "$@" >"$dir/redis.log" 2>&1 &
		pid=$!
		pids+=("$pid")
		for _ in $(seq 100); do
			if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
				echo "demo: $name: redis-server pid $pid on 127.0.0.1:$port" >&2
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		echo "demo: $name: redis-server on port $port did not start:" >&2
		tail -n 5 "$dir/redis.log" >&2 || true
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		unset 'pids[-1]' # reaped: never signal that PID again
	done
	echo "demo: could not start redis-server for $name" >&2
	return 1
}

cluster_started=
cluster_ports=()
start_cluster() {
	[ -n "$cluster_started" ] && return 0
	local addrs=() i
	for i in 1 2 3; do
		start_server "cluster$i" --cluster-enabled yes \
			--cluster-config-file nodes.conf --cluster-node-timeout 2000
		addrs+=("127.0.0.1:$port")
		cluster_ports+=("$port")
	done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$workdir/cluster-create.log" 2>&1 || {
		cat "$workdir/cluster-create.log" >&2
		return 1
	}
	local addr ok
	for _ in $(seq 100); do
		ok=1
		for addr in "${addrs[@]}"; do
			redis-cli -h 127.0.0.1 -p "${addr##*:}" cluster info 2>/dev/null |
				grep -q '^cluster_state:ok' || ok=
		done
		[ -n "$ok" ] && break
		sleep 0.1
	done
	if [ -z "$ok" ]; then
		echo "demo: the cluster did not reach cluster_state:ok" >&2
		return 1
	fi
	REDIS_CLUSTER_ADDRS=$(
		IFS=,
		echo "${addrs[*]}"
	)
	export REDIS_CLUSTER_ADDRS
	echo "demo: cluster up: REDIS_CLUSTER_ADDRS=$REDIS_CLUSTER_ADDRS" >&2
	cluster_started=1
}

examples=()
for main in examples/*/main.go; do
	[ -f "$main" ] && examples+=("$(basename "$(dirname "$main")")")
done
if [ ${#examples[@]} -eq 0 ]; then
	echo "demo: no examples found (examples/<name>/main.go)"
	exit 0
fi

start_server standalone
REDIS_ADDR=127.0.0.1:$port
export REDIS_ADDR
standalone_port=$port
start_server replica --replicaof 127.0.0.1 "$standalone_port"
replica_port=$port
for _ in $(seq 100); do
	redis-cli -h 127.0.0.1 -p "$replica_port" info replication 2>/dev/null |
		grep -q '^master_link_status:up' && break
	sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$replica_port" info replication | grep -q '^master_link_status:up' || {
	echo "demo: the replica on port $replica_port did not connect to its primary" >&2
	exit 1
}
echo "demo: replica on 127.0.0.1:$replica_port follows the standalone server" >&2

for name in "${examples[@]}"; do
	case $name in
	cluster*) start_cluster ;;
	esac
	for p in "$standalone_port" "${cluster_ports[@]}"; do
		redis-cli -h 127.0.0.1 -p "$p" flushall >/dev/null
	done
	echo "=== examples/$name (REDIS_ADDR=$REDIS_ADDR)"
	if [ -f "examples/$name/go.mod" ]; then # a module of its own (its dependencies stay out of rbatch's)
		(cd "examples/$name" && go run .)
	else
		go run "./examples/$name"
	fi
done
echo "demo: all ${#examples[@]} examples ran"
