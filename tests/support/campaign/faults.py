"""Each fault made real, then undone: signals to gq, a tmpfs filled, Redis killed or turned
read-only, the target down or slow. The injector keeps what it did, with wall-clock times."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from support import closed_port
from support.campaign.plan import Fault
from support.campaign.world import JOURNAL_MIN_FREE_MB, World

EXIT_DEADLINE = 40.0    # seconds a draining daemon may take to exit (drain_timeout 15, and room)
OOM_RSS_MB = 1          # memory.max_rss_mb a daemon is reloaded with to make it pass its limit


@dataclass
class Done:
    """A fault as it was made: when it began and ended (time.time()), and what came of it."""
    fault: Fault
    began: float
    ended: float
    note: str = ""


class Injector:
    def __init__(self, world: World, slow: Callable[[float], None]):
        """`slow(delay)`: how the target is made slow (the producer's jobs ask for the delay;
        0 ends it)."""
        self.world, self.slow = world, slow
        self.done: list[Done] = []
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    def run(self, faults: list[Fault], start: float, halt: threading.Event) -> None:
        """Make each fault at its planned time (or at once when late), until `halt`."""
        for fault in faults:
            if halt.wait(max(0.0, start + fault.at - time.monotonic())):
                return
            began = time.time()
            note = getattr(self, "do_" + fault.kind)(fault, halt) or ""
            with self._lock:
                self.done.append(Done(fault, began, time.time(), note))
                self.counts[fault.kind] += 1

    def orphaning(self) -> list[Done]:
        """The faults after which gq may not know what became of an attempt in flight."""
        return [d for d in self.done if d.fault.kind in ("kill9", "stop_cont", "oom_rss", "term_restart")]

    # -- gq's processes

    def do_kill9(self, fault: Fault, halt: threading.Event) -> str:
        node = self.world.nodes[fault.node]
        node.kill()
        halt.wait(fault.hold)
        node.start()
        return f"{node.name} killed, started again"

    def do_stop_cont(self, fault: Fault, halt: threading.Event) -> str:
        node = self.world.nodes[fault.node]
        node.signal(signal.SIGSTOP)
        time.sleep(fault.hold)   # not cut short: a SIGSTOP is always followed by its SIGCONT
        node.signal(signal.SIGCONT)
        return f"{node.name} stopped {fault.hold:.1f}s"

    def do_term_restart(self, fault: Fault, halt: threading.Event) -> str:
        node = self.world.nodes[fault.node]
        node.signal(signal.SIGTERM)
        code = node.wait_exit(EXIT_DEADLINE)
        time.sleep(fault.hold)
        node.start()
        return f"{node.name} drained, exit {code}"

    def do_hup_config(self, fault: Fault, halt: threading.Event) -> str:
        node, d = self.world.nodes[fault.node], fault.detail
        node.reload(pool={"size": d["pool_size"]},
                    retry={"max_attempts": d["max_attempts"], "backoff_base": d["backoff_base"]})
        return f"{node.name} reloaded"

    def do_oom_rss(self, fault: Fault, halt: threading.Event) -> str:
        """memory.max_rss_mb set below the daemon's RSS by a reload: it drains and exits, as it
        does when its memory grows past the limit; it starts again with the limit off."""
        node = self.world.nodes[fault.node]
        node.reload(memory={"max_rss_mb": OOM_RSS_MB})
        code = node.wait_exit(EXIT_DEADLINE)
        node.config["memory"] = {"max_rss_mb": 0}
        time.sleep(fault.hold)
        node.start()
        return f"{node.name} passed max_rss_mb, exit {code}"

    # -- the disk, Redis

    def do_disk_full(self, fault: Fault, halt: threading.Event) -> str:
        disk = self.world.disk
        assert disk is not None, "a full disk is a fault of the journal's set-up"
        leave = 0 if fault.detail["to_the_last_byte"] else JOURNAL_MIN_FREE_MB * (1 << 20) // 2
        written = disk.fill(leave)
        time.sleep(fault.hold)
        disk.free()
        return f"ballast {written >> 20} MB, {disk.free_bytes() >> 20} MB free after"

    def do_redis_kill(self, fault: Fault, halt: threading.Event) -> str:
        redis = self.world.redis
        assert redis is not None
        redis.kill()
        time.sleep(fault.hold)
        redis.start()
        return f"redis killed, started again on {redis.port}"

    def do_redis_readonly(self, fault: Fault, halt: threading.Event) -> str:
        """A failover's refusal of writes: Redis made the replica of a master that is not there
        (it keeps its data and answers READONLY to writes), then a master again."""
        redis = self.world.redis
        assert redis is not None
        redis.client().execute_command("REPLICAOF", "127.0.0.1", str(closed_port()))
        time.sleep(fault.hold)
        self.world.redis_master()
        return "redis read-only, then master again"

    # -- the target

    def do_target_flap(self, fault: Fault, halt: threading.Event) -> str:
        self.world.target.control("/_down")
        time.sleep(fault.hold)
        self.world.target.control("/_up")
        return "target down (503), then up"

    def do_target_slow(self, fault: Fault, halt: threading.Event) -> str:
        self.slow(fault.detail["delay"])
        time.sleep(fault.hold)
        self.slow(0.0)
        return f"jobs sent meanwhile ask for delay={fault.detail['delay']}"
