"""One date format with seconds and the zone, wherever Django formats a time (the admin's
lists and read-only fields), the same as the run page's tables. English's own formats
("Nov. 24, 2026, 9 a.m.") would otherwise win over settings.DATETIME_FORMAT."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
