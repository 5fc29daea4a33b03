/* proto/blocked: the tables never mirrored (protocol section 8): the vendor's built-in list,
 * which configuration can extend and never reduce, compared case-insensitively. */
#include "proto/schema.h"

#include "proto/fault.h"

static const char *const builtin_blocked[] = {
    "area", "areauserassignment", "areauserinclusion", "satellite", "travelcurrent",
    "travelgenerateddatabase", "travelgeneratedtransaction", "travelidmapping", "traveller",
    "traveltransactionlog", "audienceconfig", "audiencelayout", "audiencelayoutlink",
    "audiencevisibility", "activeuser", "dbi_agent", "dbi_agent_field", "dbi_agent_schedule",
    "credentials", "email_account", "email_folder", "email_item", "email_attachment",
    "service_auth", "login", "login_customer", "sequence", "countervalue", "statusvalue",
    "freetextindex", "freetextstopwords", "freetextwords", "script_trace_run", "userpreference",
    "batchtask", "batchtaskdefinition", "cachetables", "cacheinvalidation", "cc_template",
    "config", "configurablescreendelta", "connectionconfigfield", "cust_config", "dashboard",
    "dashboard_theme", "dashboard_tile", "dashboard_tile_definition", "dashboard_tile_field",
    "erpsynclog", "foreignapp", "foreigndevice", "foreignkey", "form_keys", "history",
    "importdefault", "importfield", "importobject", "importrelation", "item_config", "inbox",
    "licenseassoclink", "licenssatllink", "locking", "log_events", "kb_entry_words",
    "mergemovelog", "message", "messagehandler", "modulelicense", "moduleowner", "notice_frame",
    "notify", "olefield", "olefieldtext", "olesubject", "olesubjecttext", "oleview", "oleviewtext",
    "outbox", "prefdesc", "prefdescline", "registry", "searchcriteria", "searchcriteriagroup",
    "searchcriterion", "searchcriterionvalue", "session_object", "sorcriteria", "sorfct",
    "sorfield", "sorlabellayout", "soroperators", "sorpublish", "sorpublishgrouplink",
    "sorsection", "sortemplate", "superlistcolumnsize", "systemevent", "taborder", "timestamps",
    "trayapp", "udtempsmall", "udtemplarge", "usagestats", "user_attribute", "user_candidate",
    "webappusage", "webhook", "winpossize", "word_relations",
};

int table_blocked(const char *name, const struct cfg_strings *extra)
{
    for (size_t k = 0; k < sizeof(builtin_blocked) / sizeof(builtin_blocked[0]); k++)
        if (ident_equal(name, builtin_blocked[k]))
            return 1;
    for (size_t k = 0; extra && k < extra->n; k++)
        if (ident_equal(name, extra->items[k]))
            return 1;
    return 0;
}

int table_refuse_blocked(const char *name, const struct cfg_strings *extra, struct fault *f)
{
    if (!table_blocked(name, extra))
        return 0;
    fault_set(f, FAULT_BLOCKED_TABLE, "table %s is blocked and is never mirrored", name);
    fault_at(f, name, NULL, 0);
    return -1;
}
