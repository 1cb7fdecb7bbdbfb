"""Amazon SES: receipt notifications and SendBounce."""
