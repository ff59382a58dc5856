"""Collects every scenario of features/; the steps are plugins loaded by conformance.plugin."""

from pytest_bdd import scenarios

from conformance.registry import FEATURES_DIR

scenarios(str(FEATURES_DIR))
