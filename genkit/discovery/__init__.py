"""Plugin discovery: the hooks plugins implement and the registry that collects them."""
