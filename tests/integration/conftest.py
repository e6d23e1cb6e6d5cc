"""Fixtures of the integration layer."""

from tests.integration.emulator_fixtures import *  # noqa: F403
from tests.integration.helm_fixtures import *  # noqa: F403
