"""What the tests share that is not a fixture: servers, the fake upstream, HTML helpers, ports, clocks."""
