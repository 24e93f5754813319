-- Webhook retention (services/notifier/webhook_retention.py): finished deliveries by their last try,
-- so each pass reads only what it deletes. Pending rows are not in it (the sender's index covers them).
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at) WHERE state <> 'pending';
