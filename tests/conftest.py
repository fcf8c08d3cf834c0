pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.service",
    "tests.fixtures.catalogs",
    "tests.fixtures.memory",
]
