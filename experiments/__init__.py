"""Experiment configs (YAML), their schema, and the command line that turns them into runs."""
