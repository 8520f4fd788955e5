"""Results: flat metrics JSON (what `dvc metrics diff` reads), Markdown tables beside the paper's numbers, figures,
records and provenance. `common` holds what both domains' reports share (one look, one place); `knowledge` and
`fewshot` build each domain's report from its stages' outputs."""
