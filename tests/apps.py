"""The settings of the apps that tests make in-process (service.app.create_app)."""

import dataclasses

from service.config import Settings, WebhookSettings

# What an empty environment gives: the service's defaults.
DEFAULTS = Settings.from_env({})


def app_settings(database_url: str, admin_database_url: str | None = None, **changes) -> Settings:
    """The defaults, serving on these databases. Webhooks are not delivered unless `webhooks` says
    so: each test's app would otherwise deliver the events of the tests around it."""
    return dataclasses.replace(DEFAULTS, **{"database_url": database_url, "admin_database_url": admin_database_url,
                                            "webhooks": WebhookSettings(enabled=False), **changes})
