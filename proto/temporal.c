/* proto/temporal: checks the date and time forms of protocol section 5 against their types'
 * ranges and precisions. Exact grammar, fixed-width fields, no locale involved. */
#include "proto/temporal.h"

/* A read position in the value being checked. */
struct cursor {
    const char *p;
    const char *end;
};

struct date {
    int year, month, day;
};

struct time_of_day {
    int hour, minute, second;
    const char *fraction;   /* digits after '.', NULL when absent */
    size_t fraction_len;
};

/* Reads exactly width decimal digits. */
static int take_digits(struct cursor *c, int width, int *value)
{
    if (c->end - c->p < width)
        return -1;
    *value = 0;
    for (int k = 0; k < width; k++) {
        if (c->p[k] < '0' || c->p[k] > '9')
            return -1;
        *value = *value * 10 + (c->p[k] - '0');
    }
    c->p += width;
    return 0;
}

static int take_char(struct cursor *c, char ch)
{
    if (c->p >= c->end || *c->p != ch)
        return -1;
    c->p++;
    return 0;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* YYYY-MM-DD, a real calendar date in 0001-01-01..9999-12-31. */
static int take_date(struct cursor *c, struct date *d)
{
    if (take_digits(c, 4, &d->year) || take_char(c, '-') || take_digits(c, 2, &d->month) ||
        take_char(c, '-') || take_digits(c, 2, &d->day))
        return -1;
    if (d->year < 1 || d->month < 1 || d->month > 12 || d->day < 1 ||
        d->day > days_in_month(d->year, d->month))
        return -1;
    return 0;
}

/* HH:MM:SS[.f...] with at least one fraction digit after a '.'. */
static int take_time(struct cursor *c, struct time_of_day *t)
{
    if (take_digits(c, 2, &t->hour) || take_char(c, ':') || take_digits(c, 2, &t->minute) ||
        take_char(c, ':') || take_digits(c, 2, &t->second))
        return -1;
    if (t->hour > 23 || t->minute > 59 || t->second > 59)
        return -1;
    t->fraction = NULL;
    t->fraction_len = 0;
    if (take_char(c, '.') == 0) {
        t->fraction = c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
        t->fraction_len = (size_t)(c->p - t->fraction);
        if (t->fraction_len == 0)
            return -1;
    }
    return 0;
}

/* Fraction digits that are not trailing zeros. */
static size_t significant_fraction(const struct time_of_day *t)
{
    size_t n = t->fraction_len;
    while (n > 0 && t->fraction[n - 1] == '0')
        n--;
    return n;
}

static int date_compare(const struct date *d, int year, int month, int day)
{
    if (d->year != year)
        return d->year < year ? -1 : 1;
    if (d->month != month)
        return d->month < month ? -1 : 1;
    return d->day < day ? -1 : d->day > day;
}

/* datetime keeps 1/300 s, so its milliseconds end in 0, 3 or 7; fraction digits past the
 * third are allowed only as zeros. */
static int datetime_fraction_fits(const struct time_of_day *t)
{
    if (!t->fraction)
        return 1;
    if (significant_fraction(t) > 3)
        return 0;
    char last = t->fraction_len >= 3 ? t->fraction[2] : '0';
    return last == '0' || last == '3' || last == '7';
}

/* [+-]HH:MM within +-14:00. */
static int take_offset(struct cursor *c)
{
    int hours, minutes;
    if (take_char(c, '+') && take_char(c, '-'))
        return -1;
    if (take_digits(c, 2, &hours) || take_char(c, ':') || take_digits(c, 2, &minutes))
        return -1;
    return minutes <= 59 && hours * 60 + minutes <= 14 * 60 ? 0 : -1;
}

int temporal_fits(const struct sql_type *type, const char *text, size_t len)
{
    struct cursor c = {text, text + len};
    struct date d = {0, 0, 0};
    struct time_of_day t = {0, 0, 0, NULL, 0};
    enum sql_kind kind = type->kind;
    if (kind != SQL_TIME && take_date(&c, &d))
        return 0;
    if (kind != SQL_DATE && ((kind != SQL_TIME && take_char(&c, 'T')) || take_time(&c, &t)))
        return 0;
    if (kind == SQL_DATETIMEOFFSET && take_offset(&c))
        return 0;
    if (c.p != c.end)
        return 0;
    switch (kind) {
    case SQL_DATE:
        return 1;
    case SQL_TIME:
    case SQL_DATETIME2:
    case SQL_DATETIMEOFFSET:
        return significant_fraction(&t) <= (size_t)type->scale;
    case SQL_DATETIME:
        return date_compare(&d, 1753, 1, 1) >= 0 && datetime_fraction_fits(&t);
    case SQL_SMALLDATETIME:
        return date_compare(&d, 1900, 1, 1) >= 0 && date_compare(&d, 2079, 6, 6) <= 0 &&
               t.second == 0 && (!t.fraction || significant_fraction(&t) == 0);
    default:
        return 0;
    }
}
