"""`sgdfuse` command line: one module per subcommand; imported by nothing in the package."""
