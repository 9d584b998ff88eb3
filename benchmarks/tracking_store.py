"""How fast each MLflow tracking store absorbs a sweep's metrics: a tracking server on
PostgreSQL and on sqlite against direct stores (no server): sqlite, what a laptop sweep
uses, and the same PostgreSQL; each with 1 and 4 concurrent writers.

    python benchmarks/tracking_store.py [--quick]

Needs the `postgres` extra (`pip install -e ".[postgres]"`) and Debian's PostgreSQL
server binaries (`apt-get install postgresql`; initdb and pg_ctl on PATH or under
/usr/lib/postgresql/VERSION/bin). Everything runs on 127.0.0.1 in temporary folders
that are deleted at the end, also after Ctrl-C or an error: a PostgreSQL cluster of its
own (started as the `postgres` user when run as root, which initdb refuses), and two
`mlflow server`s, one on that cluster and one on a sqlite file.

A writer is one process with its own run (one trial), logging whole generations with
`MlflowClient.log_batch` and, every ARTIFACT_EVERY calls, a 100 kB Parquet-sized file
with `log_artifact` (a records part written at a checkpoint). Two workloads:
  summary6x50: 6 summary metrics a generation, 50 generations a call (the coming layout);
  full30x33:   30 metrics a generation, 33 a call (today's: whole generations, at most
               the 1,000 metrics log_batch takes).
Each measurement is a window of --seconds in which every writer writes as fast as the
store answers; throughput counts what was written from the window's start until the
last writer's last call returned. Each writer's run is created and written once before
its first window (not timed: schema creation, first connections, imports). Repeats
interleave the stores, each repeat in a rotated order, so a busy machine's slow moments
fall on all of them; the table gives the median and the range over the repeats. Ratios
are against the direct sqlite store with 1 writer under the same workload, measured in
the same run. At the end, each run's metric history is read back and must hold every
generation written.

Wall-clock rates on a shared machine move with its load, so the CPU time each part
spends per 1,000 metrics is measured too (from /proc, over the window): the writers
(MLflow's client; for a direct store also the ORM and sqlite), the mlflow server's
processes, PostgreSQL's. It hardly depends on what else runs, and it bounds what one
writer can reach on an idle machine, where its calls run one after another.

Every process uses one BLAS thread. The stores keep their defaults (PostgreSQL and
sqlite both wait for the disk at each commit).
"""

from __future__ import annotations

import argparse
import glob
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ARTIFACT_BYTES = 100_000  # one trial's records part at a checkpoint, Parquet-compressed
ARTIFACT_EVERY = 2  # log_batch calls between two artifacts
POSTGRES_USER = "mad"  # the cluster's superuser (trust authentication, 127.0.0.1 only)
DATABASE = "mlflow"


@dataclass(frozen=True)
class Workload:
    """Generations of `metrics` values each, logged `generations_per_call` at a time."""

    name: str
    metrics: int
    generations_per_call: int

    def __post_init__(self):
        if self.metrics * self.generations_per_call > 1000:
            raise ValueError(f"{self.name}: log_batch takes at most 1,000 metrics a call")

    @property
    def keys(self) -> list[str]:
        return [f"metric_{i:02d}" for i in range(self.metrics)]


WORKLOADS = (Workload("summary6x50", metrics=6, generations_per_call=50),
             Workload("full30x33", metrics=30, generations_per_call=33))


def postgres_uri(port: int, host: str = "127.0.0.1", user: str = POSTGRES_USER,
                 database: str = DATABASE, password: str | None = None) -> str:
    """SQLAlchemy URI of a PostgreSQL database through psycopg2, the driver of the
    `postgres` extra: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3."""
    credentials = user if password is None else f"{user}:{password}"
    return f"postgresql+psycopg2://{credentials}@{host}:{port}/{database}"


def server_command(backend_uri: str, artifacts: Path, port: int, workers: int) -> list[str]:
    """The `mlflow server` command line, as cluster.yaml runs it (artifacts proxied by
    the server, so writers need no access to the artifact store)."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
            "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used by a process and its descendants, the exited ones included (a
    reaped child's time moves into its parent's), from /proc."""
    parents, used = {}, {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:  # exited while listed
            continue
        pid = int(stat.split("/")[2])
        parents[pid] = int(fields[1])
        used[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    tree, grown = {root}, True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(used.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with its own session, and everything it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ---------------------------------------------------------------------------- PostgreSQL

def postgres_binaries() -> Path:
    """The folder holding initdb and pg_ctl: PATH first, else the newest Debian one."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                     key=lambda folder: int(Path(folder).parent.name))
    if not folders:
        raise SystemExit("no PostgreSQL server binaries: apt-get install postgresql")
    return Path(folders[-1])


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1, in its own temporary folder."""

    def __init__(self):
        self.binaries = postgres_binaries()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="tracking_store_pg"))
        self.data = self.folder / "data"
        self.started = False
        # initdb refuses to run as root: the cluster then belongs to the postgres user.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise SystemExit("running as root needs the `postgres` user "
                                 "(Debian's postgresql package creates it)") from None
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, tool: str, *arguments: str, **options) -> None:
        subprocess.run([*self.as_user, str(self.binaries / tool), *arguments], check=True,
                       stdout=subprocess.DEVNULL, **options)

    def start(self) -> str:
        """Create the cluster and the database; returns the database's URI."""
        self._run("initdb", "-D", str(self.data), "-U", POSTGRES_USER, "--auth=trust",
                  "--encoding=UTF8", "--no-sync")
        settings = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                    f"-c unix_socket_directories={self.folder}")
        # Its own session: Ctrl-C reaches this script only, which then stops the
        # servers in order.
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l",
                  str(self.folder / "postgres.log"), "-o", settings, start_new_session=True)
        self.started = True
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", POSTGRES_USER,
                  DATABASE)
        return postgres_uri(self.port)

    @property
    def pid(self) -> int:
        """The postmaster's process id (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def version(self) -> str:
        return subprocess.run([str(self.binaries / "postgres"), "--version"], check=True,
                              capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", "fast")
            except subprocess.CalledProcessError:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:  # not running after all
                    pass
        shutil.rmtree(self.folder, ignore_errors=True)


# ------------------------------------------------------------------------- MLflow server

class MlflowServer:
    """`mlflow server` on 127.0.0.1 over a backend store; started and stopped here."""

    def __init__(self, backend_uri: str, artifacts: Path, workers: int, log: Path):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with log.open("w") as output:
            self.process = subprocess.Popen(
                server_command(backend_uri, artifacts, self.port, workers), env=env,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self.log = log

    def wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        stop_group(self.process)


# ------------------------------------------------------------------------------ writers

def writer_main(connection, folder: Path) -> None:
    """One writer process: keeps one run per (store, workload, writers) cell and writes
    to it on request. Its artifact files pass through `folder`."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    runs: dict[tuple, dict] = {}
    folder.mkdir()
    payload = os.urandom(ARTIFACT_BYTES)  # incompressible, as a compressed Parquet file is

    def write_call(run: dict) -> int:
        """One log_batch call of whole generations (plus an artifact when due); returns
        the metrics written."""
        workload: Workload = run["workload"]
        first, now = run["generations"], int(time.time() * 1000)
        metrics = [Metric(key, float(generation % 97) / 97, now, generation)
                   for generation in range(first, first + workload.generations_per_call)
                   for key in workload.keys]
        run["client"].log_batch(run["run_id"], metrics=metrics)
        run["generations"] += workload.generations_per_call
        run["calls"] += 1
        if run["calls"] % ARTIFACT_EVERY == 0:
            local = folder / f"part-{run['generations']:06d}.parquet"
            local.write_bytes(payload)
            run["client"].log_artifact(run["run_id"], str(local), artifact_path="records")
            local.unlink()
        return len(metrics)

    while True:
        message = connection.recv()
        if message[0] == "stop":
            return
        try:
            if message[0] == "prepare":
                _, cell, uri, experiment_id, workload = message
                if cell not in runs:
                    client = MlflowClient(uri)
                    run_id = client.create_run(experiment_id).info.run_id
                    runs[cell] = {"client": client, "run_id": run_id, "workload": workload,
                                  "generations": 0, "calls": 0}
                    for _ in range(ARTIFACT_EVERY):  # first calls and first artifact
                        write_call(runs[cell])
                connection.send(("ready",))
            elif message[0] == "go":
                _, cell, start_at, seconds = message
                run = runs[cell]
                time.sleep(max(0.0, start_at - time.time()))
                cpu, metrics = time.process_time(), 0
                while time.time() < start_at + seconds:
                    metrics += write_call(run)
                connection.send(("done", {
                    "end": time.time(), "metrics": metrics,
                    "cpu": time.process_time() - cpu, "run_id": run["run_id"],
                    "generations_total": run["generations"]}))
        except Exception as error:  # reported to, and raised in, the parent
            connection.send(("error", repr(error)))


@dataclass
class Store:
    """A tracking URI and the processes, besides the writers, that work for it."""

    name: str
    uri: str
    server: MlflowServer | None = None
    postgres: Postgres | None = None
    experiment_id: str = ""

    def cpu_seconds(self) -> dict[str, float]:
        """Cumulative CPU seconds of its server and PostgreSQL, those it has."""
        used = {}
        if self.server is not None:
            used["server"] = tree_cpu_seconds(self.server.process.pid)
        if self.postgres is not None:
            used["postgres"] = tree_cpu_seconds(self.postgres.pid)
        return used


class Writers:
    """Writer processes, started once (each imports mlflow) and reused by every cell."""

    def __init__(self, count: int, folder: Path):
        context = multiprocessing.get_context("spawn")
        self.connections, self.processes = [], []
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=writer_main, daemon=True,
                                      args=(theirs, folder / f"writer-{index}"))
            process.start()
            self.connections.append(ours)
            self.processes.append(process)

    @staticmethod
    def _answer(connection, expected: str):
        answer = connection.recv()
        if answer[0] == "error":
            raise RuntimeError(f"a writer failed: {answer[1]}")
        assert answer[0] == expected, answer
        return answer[1] if len(answer) > 1 else None

    def measure(self, store: Store, workload: Workload, writers: int,
                seconds: float) -> dict:
        """One window of `writers` writers: rates, CPU milliseconds per 1,000 metrics,
        and each run's generations so far."""
        cell = (store.name, workload.name, writers)
        used = self.connections[:writers]
        for connection in used:
            connection.send(("prepare", cell, store.uri, store.experiment_id, workload))
        for connection in used:
            self._answer(connection, "ready")
        cpu_before = store.cpu_seconds()
        start_at = time.time() + 0.1
        for connection in used:
            connection.send(("go", cell, start_at, seconds))
        done = [self._answer(connection, "done") for connection in used]
        cpu = {"writers": sum(d["cpu"] for d in done),
               **{part: after - cpu_before[part]
                  for part, after in store.cpu_seconds().items()}}
        window = max(d["end"] for d in done) - start_at
        metrics = sum(d["metrics"] for d in done)
        return {"metrics_per_s": metrics / window,
                "generations_per_s": metrics / workload.metrics / window,
                "cpu_ms_per_1k": {part: 1e6 * used / metrics for part, used in cpu.items()},
                "runs": {d["run_id"]: d["generations_total"] for d in done}}

    def stop(self) -> None:
        for connection in self.connections:
            try:
                connection.send(("stop",))
            except OSError:  # that writer is gone already (Ctrl-C reaches it too)
                pass
        for process in self.processes:
            process.join(timeout=5)  # a writer ends its window first
            if process.is_alive():
                process.terminate()
                process.join()


# ------------------------------------------------------------------------------- report

CPU_PARTS = ("writers", "server", "postgres")


def summarize(samples: list[float]) -> tuple[float, float, float]:
    """(median, lowest, highest)."""
    return statistics.median(samples), min(samples), max(samples)


def report(results: dict, stores: list[str], writer_counts: list[int]) -> list[str]:
    """The table's lines: one row per workload, writers and store. A cell's results
    hold one sample per repeat of metrics_per_s, generations_per_s and cpu_ms_per_1k."""
    lines = [f"{'workload':<12} {'writers':>7}  {'store':<16} {'metrics/s':>23} "
             f"{'generations/s':>14} {'x direct':>9}   {'CPU ms per 1k metrics':>23}",
             f"{'':<12} {'':>7}  {'':<16} {'median [range]':>23} {'median':>14} "
             f"{'sqlite, 1':>9}   {'writers server postgres':>23}"]
    for workload in WORKLOADS:
        baseline = summarize(results[(stores[0], workload.name, 1)]["metrics_per_s"])[0]
        for writers in writer_counts:
            for store in stores:
                cell = results[(store, workload.name, writers)]
                median, low, high = summarize(cell["metrics_per_s"])
                generations = summarize(cell["generations_per_s"])[0]
                cpu = [summarize([sample[part] for sample in cell["cpu_ms_per_1k"]])[0]
                       if part in cell["cpu_ms_per_1k"][0] else None for part in CPU_PARTS]
                cpu_text = " ".join(f"{'-' if ms is None else f'{ms:,.0f}':>{len(part)}}"
                                    for ms, part in zip(cpu, CPU_PARTS))
                lines.append(f"{workload.name:<12} {writers:>7}  {store:<16} "
                             f"{median:>7,.0f} [{low:>6,.0f}-{high:>6,.0f}] "
                             f"{generations:>14,.1f} {median / baseline:>8.2f}x   {cpu_text}")
    return lines


def verify(stores: dict[str, Store], results: dict) -> None:
    """Every generation written must be in each run's metric history."""
    from mlflow import MlflowClient

    for (name, workload_name, _), cell in results.items():
        key = next(w for w in WORKLOADS if w.name == workload_name).keys[-1]
        client = MlflowClient(stores[name].uri)
        for run_id, generations in cell["runs"].items():
            stored = len(client.get_metric_history(run_id, key))
            if stored != generations:
                raise RuntimeError(f"{name}: run {run_id} holds {stored} of {generations} "
                                   f"generations of {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="3 repeats of 1 s windows instead of 5 of 4 s")
    parser.add_argument("--seconds", type=float, default=None, help="length of a window")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--server-workers", type=int, default=2,
                        help="mlflow server --workers (cluster.yaml runs 2)")
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    repeats = args.repeats or (3 if args.quick else 5)
    writer_counts = sorted(set(args.writers) | {1})

    # Inherited by the writers and servers started below.
    os.environ.update({"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped and the folders deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from mlflow import MlflowClient

    print("$ python " + " ".join(sys.argv), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="tracking_store"))
    postgres, servers, writers = None, [], None
    started = time.monotonic()
    try:
        postgres = Postgres()
        postgres_backend = postgres.start()
        for backend, name in ((f"sqlite:///{folder}/server.db", "sqlite"),
                              (postgres_backend, "postgres")):
            servers.append(MlflowServer(backend, folder / f"artifacts-{name}",
                                        args.server_workers, folder / f"server-{name}.log"))
        # Their imports overlap the servers' start.
        writers = Writers(max(writer_counts), folder)
        stores = {store.name: store for store in (
            Store("direct sqlite", f"sqlite:///{folder}/direct.db"),
            # The postgres server's database, with an experiment of its own.
            Store("direct postgres", postgres_backend, postgres=postgres),
            Store("server sqlite", servers[0].uri, server=servers[0]),
            Store("server postgres", servers[1].uri, server=servers[1], postgres=postgres))}
        order = list(stores)

        def create_experiment(store: Store) -> None:
            store.experiment_id = MlflowClient(store.uri).create_experiment(
                f"tracking_store {store.name}",
                artifact_location=((folder / "artifacts-direct").as_uri()
                                   if store.server is None else None))

        # The direct sqlite store's tables are made while the servers start; the
        # PostgreSQL tables are the postgres server's to make.
        create_experiment(stores["direct sqlite"])
        for server in servers:
            server.wait()
        for name in order[1:]:
            create_experiment(stores[name])
        print(f"{postgres.version()}; mlflow server --workers {args.server_workers}; "
              f"stores ready in {time.monotonic() - started:.0f} s", flush=True)
        print(f"{repeats} repeats of {seconds:g} s windows; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)

        results: dict = {}
        for repeat in range(repeats):
            rotated = order[repeat % len(order):] + order[:repeat % len(order)]
            for workload in WORKLOADS:
                for count in writer_counts:
                    for name in rotated:
                        measured = writers.measure(stores[name], workload, count, seconds)
                        cell = results.setdefault((name, workload.name, count), {
                            "metrics_per_s": [], "generations_per_s": [],
                            "cpu_ms_per_1k": []})
                        for key in ("metrics_per_s", "generations_per_s", "cpu_ms_per_1k"):
                            cell[key].append(measured[key])
                        cell["runs"] = measured["runs"]
            print(f"repeat {repeat + 1}/{repeats} done "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
        verify(stores, results)
        print(f"\nload average {os.getloadavg()[0]:.1f}; all generations read back from "
              f"every store; total {time.monotonic() - started:.0f} s\n")
        print("\n".join(report(results, order, writer_counts)))
        print(f"\nA writer: one run, log_batch of whole generations, a "
              f"{ARTIFACT_BYTES // 1000} kB artifact every {ARTIFACT_EVERY} calls.")
    finally:
        if writers is not None:
            writers.stop()
        for server in servers:
            server.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
