"""The progress feed: events published on RabbitMQ reach a follower; a lost broker costs nothing."""

import threading
import time
from types import SimpleNamespace

from aiida_mlip.events import broker_url, follow, publish
from tests.conftest import require_component


def test_published_event_reaches_a_follower(aiida_profile):
    require_component(aiida_profile.process_control_backend == "core.rabbitmq", "a RabbitMQ profile")
    url = broker_url()
    assert url is not None and url.startswith("amqp://")
    received = []
    thread = threading.Thread(target=lambda: received.extend(follow(4242, url=url, timeout=10)), daemon=True)
    thread.start()
    time.sleep(1.0)  # let the follower bind its queue
    assert publish({"run": 4242, "step": "explore", "iteration": 1, "counts": {"accurate": 3}}, url=url)
    assert publish({"run": 4243, "step": "explore", "iteration": 1}, url=url)  # another run: not followed
    assert publish({"run": 4242, "step": "finished", "iteration": 1}, url=url)
    thread.join(timeout=15)
    assert [event["step"] for event in received] == ["explore", "finished"]
    assert received[0]["counts"] == {"accurate": 3} and received[0]["run"] == 4242


def test_unreachable_broker_never_raises():
    start = time.monotonic()
    assert publish({"run": 1, "step": "train"}, url="amqp://guest:guest@127.0.0.1:1/", timeout=0.5) is False
    assert time.monotonic() - start < 10


def test_other_brokers_have_no_event_feed():
    assert broker_url(SimpleNamespace(process_control_backend="core.zeromq")) is None
