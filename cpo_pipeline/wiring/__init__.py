"""Dagster-side helpers the asset modules share (none of them defines an asset): what the UI
shows (`metadata`), launchpad configs generated from the domain dataclasses (`launchpad`), and
launching a training run through Pipes (`training_launch`). An asset module imports these, never
another asset module."""
