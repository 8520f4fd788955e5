"""User-facing errors: each carries one line per problem and maps to exit code 2 in the CLI."""


class UserError(Exception):
    """A problem with the user's input (spec, data, arguments), reported without a traceback."""

    exit_code = 2

    def __init__(self, lines: str | list[str]):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class SpecError(UserError):
    """One or more spec problems, each formatted as `FILE: key.path: message`."""


class DataError(UserError):
    """A malformed data file, naming the file and the record."""


class AdapterNotApplied(UserError):
    """Training left the model's logits unchanged: scoring it would silently report the base model."""

    exit_code = 1  # not a malformed input, but the run must stop: its numbers would be wrong
