"""Fixtures of the integration layer."""

from tests.integration.emulator_fixtures import *  # noqa: F403
