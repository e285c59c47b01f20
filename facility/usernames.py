"""Which hub usernames the facility accepts: they end up in paths, job names and batch scripts."""

# Letters, digits and . _ @ - only (e-mail style names from OIDC pass): no path separators,
# spaces or shell metacharacters can reach a path, a job name or a batch script.
USERNAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$"
