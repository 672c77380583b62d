#!/usr/bin/env python3
"""Side-by-side client benchmark on identical backends (SQLite metadata + local directory).

Clients: ours (target/release/juicefs), the reference JuiceFS 0.14.2, and bindfs over the
same disk as the FUSE floor. Workloads: sequential write then cold read of a 1 GiB file
with 1 MiB blocks (fio), and 10,000 small files (4 KiB create+write+close, stat, read,
unlink). Reports MiB/s, ops/s and each client's peak RSS, and our ratio to the reference.

Usage: bench/run.sh [--size-mib 1024] [--files 10000] [--out docs/BENCHMARKS.md]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "juicefs")
REF = os.environ.get("JUICEFS_REF", os.path.expanduser("~/.cache/jfs-tools/juicefs-ref"))


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def drop_caches():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def mounted(mp):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == mp for line in f)


class Client:
    """One file system client serving `mp` in the foreground, restartable for cold reads."""

    def __init__(self, name, work):
        self.name, self.work = name, work
        self.mp = os.path.join(work, "mnt")
        os.makedirs(self.mp, exist_ok=True)
        self.proc = None
        self.peak_rss_kib = 0

    def command(self):
        raise NotImplementedError

    def start(self):
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "log"), "a"))
        deadline = time.time() + 30
        while not mounted(self.mp):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{self.name} failed to mount; see {self.work}/log")
            time.sleep(0.05)
        time.sleep(0.3)

    def rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def stop(self):
        self.peak_rss_kib = max(self.peak_rss_kib, self.rss())
        for _ in range(100):
            if subprocess.run(["umount", self.mp], capture_output=True).returncode == 0 or not mounted(self.mp):
                break
            time.sleep(0.1)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Ours(Client):
    def __init__(self, work):
        super().__init__("ours", work)
        self.meta = f"sqlite3://{work}/meta.db"
        sh(OURS, "format", self.meta, "bench", "--storage", "file", "--bucket", f"{work}/data")

    def command(self):
        return [OURS, "mount", self.meta, self.mp]


class Reference(Client):
    def __init__(self, work):
        super().__init__("reference 0.14.2", work)
        self.meta = f"sqlite3://{work}/meta.db"
        sh(REF, "format", "--storage", "file", "--bucket", f"{work}/data", self.meta, "bench")

    def command(self):
        # Its disk cache would turn the cold read into a local-disk read: keep it off.
        return [REF, "mount", "--no-usage-report", "--cache-size", "0", "--cache-dir", f"{self.work}/cache",
                "--metrics", "127.0.0.1:0", self.meta, self.mp]


class Bindfs(Client):
    def __init__(self, work):
        super().__init__("bindfs (FUSE floor)", work)
        os.makedirs(f"{work}/src", exist_ok=True)

    def command(self):
        return ["bindfs", "-f", f"{self.work}/src", self.mp]


def fio(mp, rw, size_mib):
    out = sh("fio", "--name=seq", f"--filename={mp}/big", f"--rw={rw}", "--bs=1M", f"--size={size_mib}M",
             "--ioengine=psync", "--end_fsync=1" if rw == "write" else "--invalidate=1", "--output-format=json")
    job = json.loads(out.stdout)["jobs"][0]
    return job["write" if rw == "write" else "read"]["bw"] / 1024.0  # KiB/s -> MiB/s


def small_files(mp, n):
    d = os.path.join(mp, "small")
    os.makedirs(d, exist_ok=True)
    payload = os.urandom(4096)
    names = [os.path.join(d, f"f{i:06d}") for i in range(n)]
    res = {}
    t = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        os.write(fd, payload)
        os.close(fd)
    res["create"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for p in names:
        os.stat(p)
    res["stat"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_RDONLY)
        assert os.read(fd, 8192) == payload
        os.close(fd)
    res["read"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for p in names:
        os.unlink(p)
    res["unlink"] = n / (time.perf_counter() - t)
    return res


def run(client, size_mib, files):
    r = {}
    client.start()
    r["seq_write"] = fio(client.mp, "write", size_mib)
    client.stop()
    drop_caches()
    client.start()  # a fresh process: nothing cached in the client either
    r["seq_read"] = fio(client.mp, "read", size_mib)
    os.unlink(os.path.join(client.mp, "big"))
    r.update({f"small_{k}": v for k, v in small_files(client.mp, files).items()})
    client.stop()
    r["rss_mib"] = client.peak_rss_kib / 1024.0
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--dir", default="/var/tmp", help="where backends live (same disk for all)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, client order alternating; the mean is reported")
    a = ap.parse_args()
    runs = {}
    order = [Ours, Reference, Bindfs]
    for rnd in range(a.rounds):
        for cls in (order if rnd % 2 == 0 else list(reversed(order))):
            subprocess.run(["sync"])
            time.sleep(2)  # let the previous client's dirty pages drain
            work = tempfile.mkdtemp(prefix="jfs-bench-", dir=a.dir)
            c = cls(work)
            try:
                r = run(c, a.size_mib, a.files)
            finally:
                if c.proc and c.proc.poll() is None:
                    c.stop()
                shutil.rmtree(work, ignore_errors=True)
            runs.setdefault(c.name, []).append(r)
            print(f"round {rnd + 1}", c.name, json.dumps(r), flush=True)
    results = {}
    for name, rs in runs.items():
        results[name] = {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]}
    # Keep the column order ours, reference, bindfs.
    results = {k: results[k] for k in sorted(results, key=lambda n: ["ours", "reference 0.14.2", "bindfs (FUSE floor)"].index(n))}

    rows = [
        ("Sequential write, 1 MiB blocks (MiB/s)", "seq_write", "{:.0f}"),
        ("Sequential read, cold (MiB/s)", "seq_read", "{:.0f}"),
        ("Small files: create+write 4 KiB+close (ops/s)", "small_create", "{:.0f}"),
        ("Small files: stat (ops/s)", "small_stat", "{:.0f}"),
        ("Small files: read (ops/s)", "small_read", "{:.0f}"),
        ("Small files: unlink (ops/s)", "small_unlink", "{:.0f}"),
        ("Peak RSS of the client (MiB)", "rss_mib", "{:.0f}"),
    ]
    names = list(results)
    ours, ref = results[names[0]], results[names[1]]
    lines = ["| workload | " + " | ".join(names) + " | ours / reference |", "|---" * (len(names) + 2) + "|"]
    for label, key, fmt in rows:
        ratio = ours[key] / ref[key] if ref[key] else float("nan")
        lines.append(f"| {label} | " + " | ".join(fmt.format(results[n][key]) for n in names) + f" | {ratio:.2f}x |")
    table = "\n".join(lines)
    print(table)
    cmd = "bench/run.sh " + " ".join(sys.argv[1:])
    host = f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB"
    doc = open(a.out).read() if os.path.exists(a.out) else "# Benchmarks\n"
    section = (f"<!-- client-core:start -->\n## Client core: ours vs reference 0.14.2 vs bindfs\n\n"
               f"Command: `{cmd.strip()}` ({time.strftime('%Y-%m-%d')}, {host}, {a.size_mib} MiB file, "
               f"{a.files} small files, SQLite + local directory on the same disk for every client, "
               f"mean of {a.rounds} rounds with the client order alternating). For RSS lower is better; "
               f"for the rest higher is better.\n\n{table}\n"
               f"<!-- client-core:end -->")
    if "<!-- client-core:start -->" in doc:
        pre, rest = doc.split("<!-- client-core:start -->", 1)
        post = rest.split("<!-- client-core:end -->", 1)[1]
        doc = pre + section + post
    else:
        doc = doc.rstrip() + "\n\n" + section + "\n"
    with open(a.out, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
