"""Tests of the few-shot ARC domain: pure logic, inner loop, ReST-EM, lm-eval glue, stages, specs."""
