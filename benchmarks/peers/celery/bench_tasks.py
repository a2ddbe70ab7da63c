"""The Celery app of the peer benchmark (benchmarks/peers/celery/bench.py).

The worker is started by bench.py as
    python3 -m celery -A bench_tasks worker --concurrency 2 -P prefork
with these environment variables:
    BENCH_BROKER    redis://127.0.0.1:PORT/0 (broker and result backend)
    BENCH_RECOVERY  "1" for the SIGKILL measurement: task_acks_late and
                    task_reject_on_worker_lost (Celery's at-least-once
                    settings; by default a started task is acknowledged
                    before it runs and is lost with its worker), and
                    worker_prefetch_multiplier BENCH_PREFETCH_MULT (50, so
                    that 2 processes reserve 100 tasks)
    BENCH_LOG       the file each run of sleep_ms appends to
Everything else is Celery's default (prefetch multiplier 4, Redis
visibility_timeout 1 h, results kept 1 day).
"""

import os
import time

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0")

app = Celery("bench_tasks", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)
if os.environ.get("BENCH_RECOVERY") == "1":
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH_MULT", "50")),
    )


def _note(what, tag):
    path = os.environ.get("BENCH_LOG")
    if not path:
        return
    line = "%s %d %d %d\n" % (what, tag, os.getpid(), int(time.time() * 1000))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.task(name="noop")
def noop(x):
    return x


@app.task(name="sleep_ms")
def sleep_ms(ms, tag):
    _note("start", tag)
    time.sleep(ms / 1000.0)
    _note("end", tag)
    return tag
