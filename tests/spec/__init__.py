"""Tests of the spec models, the YAML loader and the validate/show commands."""
