"""The Celery app: queues, routes, reliability settings and the beat schedule (Asia/Shanghai)."""

from celery import Celery
from celery.schedules import crontab
from celery.signals import beat_init, before_task_publish, worker_init, worker_process_init
from kombu import pools

from broker.database import forget_engine
from broker.settings import Settings, get_settings, use_settings
from domain.plans import load_plans

QUEUES = ("intake", "review", "announce", "cycle", "payments")

ROUTES = {
    "huzhu.accept_claim": {"queue": "intake"},
    "huzhu.review_claim": {"queue": "review"},
    "huzhu.announce_claim": {"queue": "announce"},
    "huzhu.close_juries": {"queue": "review"},
    "huzhu.escalate_reviews": {"queue": "review"},
    "huzhu.publish_announcements": {"queue": "cycle"},
    "huzhu.close_cycle": {"queue": "cycle"},
    "huzhu.charge_chunk": {"queue": "cycle"},
    "huzhu.redrive_stuck": {"queue": "cycle"},
    "huzhu.advance_wind_downs": {"queue": "cycle"},
    "huzhu.collect_debits": {"queue": "payments"},
    "huzhu.debit_batch": {"queue": "payments"},
    "huzhu.collect_open_cycles": {"queue": "payments"},
    "huzhu.pay_out_cycle": {"queue": "payments"},
    "huzhu.pay_out": {"queue": "payments"},
    "huzhu.pay_pending": {"queue": "payments"},
}


def beat_schedule() -> dict:
    """Publish on the 7th and 21st, close on the 14th and 28th, at 00:00 Shanghai, per plan."""
    schedule = {
        "redrive-stuck": {"task": "huzhu.redrive_stuck", "schedule": 300.0},
        # Failed debits are retried daily until two days before the next charge day.
        "collect-open-cycles": {
            "task": "huzhu.collect_open_cycles",
            "schedule": crontab(minute=0, hour=2),
        },
        "pay-pending": {"task": "huzhu.pay_pending", "schedule": 600.0},
        # Juries vote for a day; their windows close on this sweep.
        "close-juries": {"task": "huzhu.close_juries", "schedule": 300.0},
        "escalate-reviews": {"task": "huzhu.escalate_reviews", "schedule": 300.0},
        # A plan winding down moves through its stages by the clock.
        "advance-wind-downs": {"task": "huzhu.advance_wind_downs", "schedule": 300.0},
    }
    for plan in load_plans():
        schedule[f"publish-{plan}"] = {
            "task": "huzhu.publish_announcements",
            "schedule": crontab(minute=0, hour=0, day_of_month="7,21"),
            "args": (plan,),
        }
        schedule[f"close-{plan}"] = {
            "task": "huzhu.close_cycle",
            "schedule": crontab(minute=0, hour=0, day_of_month="14,28"),
            "args": (plan,),
        }
    return schedule


def configure(app: Celery, settings: Settings) -> None:
    transport = settings.transport_options()
    app.conf.update(
        broker_url=settings.broker,
        broker_transport_options=transport,
        # Not a documented setting, but Celery's maintainers ask for it beside the transport
        # option when the timeout seems ignored (celery#7651, #9339); harmless otherwise.
        visibility_timeout=settings.visibility_timeout,
        broker_connection_retry_on_startup=True,
        # At least once: a task that dies is run again, so every task is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_timeout,
        worker_enable_soft_shutdown_on_idle=True,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.task_time_limit - 60,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # State lives in our tables, not in a result backend.
        task_ignore_result=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_routes=ROUTES,
        task_default_queue="intake",
        task_create_missing_queues=True,
        timezone="Asia/Shanghai",
        enable_utc=True,
        beat_schedule=beat_schedule(),
        # Beat's own bookkeeping (last run times) lives with the embedded data, not in the cwd.
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        worker_hijack_root_logger=False,
    )
    # The file queue's messages are written whole (broker.filequeue); others as Celery's.
    app.conf.broker_transport = "broker.filequeue:Transport" if settings.uses_file_queue else None
    if settings.broker.startswith("redis"):
        # One scheduler however many beats are started: redbeat keeps the schedule in Redis
        # under a lock; a second beat waits for the lock instead of sending duplicates.
        app.conf.update(
            beat_scheduler="redbeat.RedBeatScheduler",
            redbeat_redis_url=settings.broker,
            redbeat_key_prefix=f"{settings.broker_key_prefix}redbeat:",
            redbeat_lock_timeout=150,
            redbeat_redis_options={},
            beat_max_loop_interval=30,
        )


app = Celery("huzhu")
configure(app, get_settings())


def reconfigure(settings: Settings) -> None:
    """Switch this process to other settings: the app's broker and the database engine."""
    use_settings(settings)
    configure(app, settings)
    forget_engine()
    # The connection and producer pools were made for the old broker; Celery offers no public
    # reset, so drop them the way its own after-fork hook does, and kombu's shared registry too.
    app._pool = None
    app.amqp._producer_pool = None
    pools.reset()


@worker_process_init.connect
def _fresh_engine_after_fork(**_kwargs) -> None:
    forget_engine()


@beat_init.connect
@worker_init.connect
@before_task_publish.connect
def _folders_exist(**_kwargs) -> None:
    # Made on first use, not on import, so that importing the app writes nothing to disk.
    get_settings().make_folders()
