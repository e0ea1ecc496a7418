"""What a running server is made of besides HTTP: settings, access rules, its services."""
