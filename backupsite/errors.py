"""Error reports (the 500 page with DEBUG, the mail to ADMINS) never show a secret."""

import re

from django.views.debug import SafeExceptionReporterFilter


class SecretsHiddenFilter(SafeExceptionReporterFilter):
    """Django hides secret-looking settings and POST fields, and local variables only in
    functions marked ``@sensitive_variables``. Ingest keys' secrets pass through plain
    functions (signing.py has no Django in it), so every frame's variables are cleansed by
    name here, not only the marked ones."""

    secret_names = re.compile(r"secret|password|passwd|token|signature|authorization", re.I)

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self.cleansed_substitute if self.secret_names.search(name) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]
