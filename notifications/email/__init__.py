"""The email channel: one message per recipient, plain text and HTML, through Django's mail
API and the SMTP server the EMAIL_* settings name."""
