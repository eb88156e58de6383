"""A live progress feed of active-learning runs over RabbitMQ, and a polling fallback.

When the profile's broker is RabbitMQ, ``ActiveLearningWorkChain`` publishes one JSON event per step
to the topic exchange ``aiida-mlip.events`` with routing key ``run.<pk>.<step>``. Events are a
convenience: publishing gives up after a short time and never raises, so a lost broker never fails
a run. ``follow`` subscribes from any machine that reaches the broker; on other brokers (ZeroMQ),
or when the broker cannot be reached, ``poll`` reads the run's history from the database instead.

Event body (JSON)::

    {"run": <pk>, "uuid": "...", "step": "explore" | "select" | "label" | "train" | "iteration" | "finished",
     "iteration": <int>, "time": <unix seconds>, ...step-specific fields (counts, errors, timings)}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

EXCHANGE = "aiida-mlip.events"
LOGGER = logging.getLogger(__name__)

__all__ = ("EXCHANGE", "broker_url", "follow", "poll", "publish")


def broker_url(profile=None) -> str | None:
    """The AMQP URL of the profile's RabbitMQ broker, or ``None`` for any other broker."""
    from aiida.brokers.rabbitmq.utils import get_rmq_url
    from aiida.manage import get_manager

    profile = profile or get_manager().get_profile()
    if profile is None or profile.process_control_backend != "core.rabbitmq":
        return None
    config = profile.process_control_config
    return get_rmq_url(
        protocol=config.get("broker_protocol"),
        username=config.get("broker_username"),
        password=config.get("broker_password"),
        host=config.get("broker_host"),
        port=config.get("broker_port"),
        virtual_host=config.get("broker_virtual_host"),
        **config.get("broker_parameters", {}),
    )


def publish(event: dict, url: str | None = None, timeout: float = 2.0) -> bool:
    """Publish ``event`` (must hold ``run`` and ``step``); return whether it was sent. Never raises."""
    try:
        url = url or broker_url()
        if url is None:
            return False
        import kombu

        with kombu.Connection(
            url, connect_timeout=timeout, transport_options={"max_retries": 1}
        ) as connection:
            exchange = kombu.Exchange(EXCHANGE, type="topic", durable=False)
            producer = connection.Producer(serializer="json")
            producer.publish(
                dict(event, time=event.get("time", time.time())),
                exchange=exchange,
                declare=[exchange],
                routing_key=f"run.{event['run']}.{event['step']}",
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
                timeout=timeout,
            )
        return True
    except Exception as exception:  # a progress feed must never break the run
        LOGGER.debug("aiida-mlip event not published: %s", exception)
        return False


def follow(run: int | str = "*", url: str | None = None, timeout: float | None = None) -> Iterator[dict]:
    """Yield the events of run ``run`` (a pk, or ``"*"`` for all runs) as they are published.

    Stops after ``timeout`` seconds without an event (``None``: never) or after a ``finished`` event.
    """

    import kombu

    url = url or broker_url()
    if url is None:
        raise RuntimeError("the profile's broker is not RabbitMQ: use poll() instead")
    exchange = kombu.Exchange(EXCHANGE, type="topic", durable=False)
    with kombu.Connection(url) as connection:
        queue = kombu.Queue(exchange=exchange, routing_key=f"run.{run}.#", exclusive=True, auto_delete=True)
        received: list[dict] = []
        with connection.Consumer(
            queue, callbacks=[lambda body, message: (received.append(body), message.ack())], accept=["json"]
        ):
            while True:
                try:
                    connection.drain_events(timeout=timeout)
                except TimeoutError:
                    return
                while received:
                    event = received.pop(0)
                    if isinstance(event, (bytes, str)):
                        event = json.loads(event)
                    yield event
                    if event.get("step") == "finished":
                        return


def poll(node, interval: float = 5.0, emit: Callable[[dict], None] | None = None) -> Iterator[dict]:
    """Yield one event per new iteration record of a run, reading its ``history`` extra, until it ends."""
    seen = 0
    while True:
        history = node.base.extras.get("history", [])
        for record in history[seen:]:
            yield {"run": node.pk, "uuid": node.uuid, "step": "iteration", **record}
        seen = len(history)
        if node.is_terminated:
            yield {
                "run": node.pk,
                "uuid": node.uuid,
                "step": "finished",
                "exit_status": node.exit_status,
                "exit_message": node.exit_message,
            }
            return
        time.sleep(interval)
