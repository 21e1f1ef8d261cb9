"""The notifier's side of the store: the outbox of events and their deliveries."""
