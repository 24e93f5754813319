"""The notifier's SQL by concern (webhook deliveries); API keys are resolved by `shared.auth`."""
