"""notify: real-time notifications for the webmail and the platform's own mails (notices, reset links)."""
