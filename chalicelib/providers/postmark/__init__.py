"""Postmark: the Email API client, the inbound webhook payload, the event webhooks."""
