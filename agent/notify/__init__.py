"""Notifications: the routing tree by label matchers, receivers, and the outbox that never loses one."""
