"""The file queue writes each message whole before a consumer can take it (kombu's own
transport creates the file first and writes it after: celery/kombu#1551)."""

from queue import Empty

import pytest
from kombu import Connection

from broker import filequeue


def connection(tmp_path) -> Connection:
    folders = {name: tmp_path / name for name in ("messages", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    return Connection(
        "filesystem://",
        transport="broker.filequeue:Transport",
        transport_options={
            "data_folder_in": str(folders["messages"]),
            "data_folder_out": str(folders["messages"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
        },
    )


def test_a_consumer_never_takes_a_message_still_being_written(tmp_path, monkeypatch):
    with connection(tmp_path) as conn:
        channel = conn.default_channel
        seen_while_writing = []
        replace = filequeue.os.replace

        def consumer_polls_then_replace(partial, final):
            try:  # a consumer polling at the worst moment: the bytes are on disk, not yet named
                seen_while_writing.append(channel._get("intake"))
            except Empty:
                seen_while_writing.append(None)
            replace(partial, final)

        monkeypatch.setattr(filequeue.os, "replace", consumer_polls_then_replace)
        channel._put("intake", {"body": "claim 7"})
        assert seen_while_writing == [None]
        assert channel._get("intake") == {"body": "claim 7"}
        with pytest.raises(Empty):
            channel._get("intake")


def test_the_embedded_default_uses_it_and_a_redis_broker_does_not(tmp_path):
    from celery import Celery

    from broker.app import configure
    from broker.settings import Settings

    app = Celery("a-test")
    configure(app, Settings(data_dir=tmp_path, broker_url=""))
    assert app.conf.broker_transport == "broker.filequeue:Transport"
    assert isinstance(app.connection_for_write().transport, filequeue.Transport)
    configure(app, Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6399/0"))
    assert app.conf.broker_transport is None
