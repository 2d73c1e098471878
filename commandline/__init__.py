"""The command line: `options` builds typer options from settings classes (every stage's CLI
uses it, so an option's default and help have one source: the settings field), and `main` is
the `paper-classifier` console entry point whose subcommands are the stages."""
