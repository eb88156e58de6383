"""A production AiiDA profile in one call: PostgreSQL (``core.psql_dos``) + RabbitMQ (``core.rabbitmq``).

:func:`create_production_profile` checks that both services answer, creates a PostgreSQL role and
database for the profile (``ENCODING 'UTF8' TEMPLATE template0``: the new database takes its
encoding from the statement, not from a template whose locale the server may not have, which is
what breaks ``verdi presto --use-postgres`` on machines without the ``en_US.UTF-8`` locale), then the
profile itself. It is idempotent: for a profile that exists with the same database and broker it
changes nothing and says so. ``aiida-mlip setup profile`` is its command line.
"""

from __future__ import annotations

import pathlib
import secrets
from dataclasses import dataclass, field

__all__ = ("ProfileSetupError", "ProfileSettings", "create_production_profile", "drop_profile_database")


class ProfileSetupError(RuntimeError):
    """A service that does not answer, or an existing profile that does not match; the message says which."""


@dataclass
class ProfileSettings:
    """Where the services are and what to call things (``database`` and ``role`` default to ``aiida-<name>``)."""

    name: str
    email: str = "aiida@localhost"
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_admin: str = "postgres"
    postgres_admin_password: str = ""
    database: str | None = None
    role: str | None = None
    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = 5672
    rabbitmq_username: str = "guest"
    rabbitmq_password: str = "guest"
    rabbitmq_virtual_host: str = ""
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.database = self.database or f"aiida-{self.name}"
        self.role = self.role or f"aiida-{self.name}"


def _admin_connection(settings: ProfileSettings):
    import psycopg

    try:
        return psycopg.connect(
            host=settings.postgres_host,
            port=settings.postgres_port,
            user=settings.postgres_admin,
            password=settings.postgres_admin_password or None,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.Error as exception:
        reason = (
            str(exception).strip().splitlines()[0] if str(exception).strip() else type(exception).__name__
        )
        raise ProfileSetupError(
            f"PostgreSQL does not answer at {settings.postgres_host}:{settings.postgres_port} as "
            f"{settings.postgres_admin!r}: {reason}"
        ) from None


def _broker_config(settings: ProfileSettings) -> dict:
    """The broker settings of the profile, after a connection to RabbitMQ has been made with them.

    aiida-core's probe connects with ``asyncio.run``, which leaves the calling thread without an event
    loop. An AiiDA runner created earlier in the same process keeps the old loop while the processes
    run later get a new one, and an ``core.ssh_async`` transport then fails with "Cannot run the event
    loop while another loop is running". The probe therefore runs in a thread of its own.
    """
    from concurrent.futures import ThreadPoolExecutor

    from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rabbitmq-probe") as pool:
            return pool.submit(
                detect_rabbitmq_config,
                host=settings.rabbitmq_host,
                port=settings.rabbitmq_port,
                username=settings.rabbitmq_username,
                password=settings.rabbitmq_password,
                virtual_host=settings.rabbitmq_virtual_host,
            ).result()
    except ConnectionError as exception:
        reason = exception.__cause__ or exception
        raise ProfileSetupError(
            f"RabbitMQ does not answer at amqp://{settings.rabbitmq_host}:{settings.rabbitmq_port} as "
            f"{settings.rabbitmq_username!r}: {str(reason).strip() or type(reason).__name__}"
        ) from None


def _existing(config, settings: ProfileSettings) -> list[str] | None:
    """``["profile ... exists ..."]`` when the profile exists as asked; ``None`` when it does not exist."""
    from aiida.common.exceptions import ProfileConfigurationError

    try:
        profile = config.get_profile(settings.name)
    except ProfileConfigurationError:
        return None
    storage = profile.storage_config
    wanted = {
        "storage": "core.psql_dos",
        "database_name": settings.database,
        "database_hostname": settings.postgres_host,
        "database_port": settings.postgres_port,
        "broker": "core.rabbitmq",
        "broker_host": settings.rabbitmq_host,
    }
    found = {
        "storage": profile.storage_backend,
        "database_name": storage.get("database_name"),
        "database_hostname": storage.get("database_hostname"),
        "database_port": storage.get("database_port"),
        "broker": profile.process_control_backend,
        "broker_host": profile.process_control_config.get("broker_host"),
    }
    different = {key: found[key] for key in wanted if found[key] != wanted[key]}
    if different:
        raise ProfileSetupError(
            f"profile {settings.name!r} exists with other settings ({', '.join(f'{k} {v!r}' for k, v in different.items())}): "
            "pick another --name or delete it with `verdi profile delete`"
        )
    return [
        f"profile {settings.name!r} exists (core.psql_dos database {settings.database!r} on "
        f"{settings.postgres_host}:{settings.postgres_port}, core.rabbitmq on {settings.rabbitmq_host}:"
        f"{settings.rabbitmq_port}): nothing changed"
    ]


def create_production_profile(settings: ProfileSettings, config=None) -> list[str]:
    """Create (or find) the profile of ``settings``; return one line per thing done, in order.

    Both services are checked first, before anything is created. A missing role is created with a
    random password; an existing role of that name (left by an earlier attempt) gets a new one. A
    missing database is created ``OWNER <role> ENCODING 'UTF8' TEMPLATE template0``; an existing
    one is reused. ``settings.options`` are set as profile options (e.g. ``runner.poll.interval``).

    Raises
    ------
    ProfileSetupError
        When PostgreSQL or RabbitMQ does not answer, or the profile exists with other settings.
    """
    from aiida.manage.configuration import get_config
    from aiida.manage.configuration.settings import AiiDAConfigDir
    from psycopg import sql

    config = config or get_config(create=True)
    with _admin_connection(settings) as connection:
        broker_config = _broker_config(settings)
        existing = _existing(config, settings)
        if existing is not None:
            return existing
        done = [
            f"PostgreSQL answers at {settings.postgres_host}:{settings.postgres_port}; RabbitMQ at "
            f"{settings.rabbitmq_host}:{settings.rabbitmq_port}"
        ]
        password = secrets.token_hex(16)
        role = sql.Identifier(settings.role)
        if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (settings.role,)).fetchone():
            connection.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(role, sql.Literal(password))
            )
            done.append(f"PostgreSQL role {settings.role!r} existed: gave it a new password")
        else:
            connection.execute(
                sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(role, sql.Literal(password))
            )
            done.append(f"created PostgreSQL role {settings.role!r}")
        if connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (settings.database,)
        ).fetchone():
            done.append(f"PostgreSQL database {settings.database!r} existed: reused it")
        else:
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                    sql.Identifier(settings.database), role
                )
            )
            done.append(f"created PostgreSQL database {settings.database!r} (UTF8, from template0)")
    repository = pathlib.Path(AiiDAConfigDir.get()) / "repository" / settings.name
    storage_config = {
        "database_engine": "postgresql_psycopg",
        "database_hostname": settings.postgres_host,
        "database_port": settings.postgres_port,
        "database_name": settings.database,
        "database_username": settings.role,
        "database_password": password,
        "repository_uri": repository.as_uri(),
    }
    _create_profile_in_place(config, settings, storage_config, broker_config)
    for option, value in settings.options.items():
        config.set_option(option, value, scope=settings.name)
    config.store()
    done.append(
        f"created profile {settings.name!r}: core.psql_dos (repository {repository}) + core.rabbitmq, "
        f"user {settings.email}"
    )
    return done


def _create_profile_in_place(
    config, settings: ProfileSettings, storage_config: dict, broker_config: dict
) -> None:
    """Create the profile, its storage and its default user without loading it.

    ``aiida.manage.configuration.create_profile`` loads the new profile to store the user and loads
    the caller's one back afterwards; that closes the caller's storage, and every node the caller
    holds then raises ``ClosedStorage``. Here the user is stored through a storage object of the new
    profile's own, so whatever profile the caller has loaded stays as it is.
    """
    from aiida.orm import User

    profile = config.create_profile(
        name=settings.name,
        storage_backend="core.psql_dos",
        storage_config=storage_config,
        broker_backend="core.rabbitmq",
        broker_config=broker_config,
    )
    storage = profile.storage_cls(profile)
    try:
        User(email=settings.email, backend=storage).store()
    finally:
        storage.close()
    config.set_default_user_email(profile, settings.email)


def drop_profile_database(settings: ProfileSettings) -> None:
    """Drop the database and role of ``settings`` (after ``verdi profile delete``; for tests and clean-ups)."""
    from psycopg import sql

    with _admin_connection(settings) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(settings.database))
        )
        connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(settings.role)))
