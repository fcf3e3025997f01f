"""The command line: flags and process set-up, config files, the codec commands."""
