"""The Celery app's contract: queues per step, the Shanghai calendar, at-least-once settings."""

import os
import subprocess
import sys
from pathlib import Path

from celery.schedules import crontab

from broker.app import ROUTES, app, beat_schedule
from domain.plans import load_plans


def test_each_step_has_its_own_queue():
    assert ROUTES["huzhu.accept_claim"]["queue"] == "intake"
    assert ROUTES["huzhu.review_claim"]["queue"] == "review"
    assert ROUTES["huzhu.announce_claim"]["queue"] == "announce"
    for task in ("publish_announcements", "close_cycle", "charge_chunk"):
        assert ROUTES[f"huzhu.{task}"]["queue"] == "cycle"


def test_beat_publishes_on_the_7th_and_21st_and_closes_on_the_14th_and_28th_in_shanghai():
    schedule = beat_schedule()
    assert app.conf.timezone == "Asia/Shanghai"
    for plan in load_plans():
        publish, close = schedule[f"publish-{plan}"], schedule[f"close-{plan}"]
        assert publish["task"] == "huzhu.publish_announcements" and publish["args"] == (plan,)
        assert close["task"] == "huzhu.close_cycle" and close["args"] == (plan,)
        assert publish["schedule"] == crontab(minute=0, hour=0, day_of_month="7,21")
        assert close["schedule"] == crontab(minute=0, hour=0, day_of_month="14,28")


def test_delivery_is_at_least_once_and_visible_to_flower():
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_cancel_long_running_tasks_on_connection_loss
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_ignore_result
    assert conf.worker_send_task_events and conf.task_send_sent_event
    # A running task must never outlive the visibility timeout, or Redis hands it out twice.
    assert conf.task_time_limit < conf.broker_transport_options["visibility_timeout"]


def test_beat_on_redis_is_a_single_instance_scheduler():
    from celery import Celery

    from broker.app import configure
    from broker.settings import Settings

    fleet = Celery("fleet-check")
    configure(fleet, Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert fleet.conf.beat_scheduler == "redbeat.RedBeatScheduler"
    assert fleet.conf.redbeat_lock_timeout < 300  # a dead beat's lock frees within minutes


def test_importing_the_app_writes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    subprocess.run(
        [sys.executable, "-c", "import workers, cli.main"],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(Path(__file__).parents[2])},
        check=True,
    )
    assert list(tmp_path.iterdir()) == []
