pytest_plugins = ["livedub_testkit.pytest_plugin"]
