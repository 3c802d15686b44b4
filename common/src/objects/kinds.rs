//! The kinds of object the cluster is configured with and manages, in one table: what the
//! admin API, the web admin and the CLI call each kind, where the store keeps it and how
//! its definition is described (a JSON Schema, from which the web admin builds its
//! forms). A new kind of configured object is added here, and each of the three finds it.

/// One kind of object.
#[derive(Debug)]
pub struct KindInfo {
    /// The admin API's collection (`/api/v1/{path}`, also the key of its list in the
    /// answer) and the web admin's page (`/admin/{path}`).
    pub path: &'static str,
    /// One of them, in words (`security definition`).
    pub singular: &'static str,
    /// The page's title (`Security definitions`).
    pub title: &'static str,
    /// Other names the CLI takes (`shoal get ch`).
    pub aliases: &'static [&'static str],
    /// The store's prefix of its records (`channels/`), for the kinds kept there as
    /// objects of their own.
    pub store_prefix: Option<&'static str>,
    /// The JSON Schema of a definition (configured kinds: what `shoal apply` takes).
    pub schema: Option<fn() -> schemars::Schema>,
    /// Whether one is deleted by name (`DELETE /api/v1/{path}/{name}`).
    pub deletable: bool,
}

pub const CHANNEL: KindInfo = KindInfo {
    path: "channels",
    singular: "channel",
    title: "Channels",
    aliases: &["channel", "ch"],
    store_prefix: Some("channels/"),
    schema: Some(|| schemars::schema_for!(crate::objects::ChannelDef)),
    deletable: true,
};

pub const OUTGOING: KindInfo = KindInfo {
    path: "outgoing",
    singular: "outgoing connection",
    title: "Outgoing connections",
    aliases: &["out", "connection", "connections", "outgoings"],
    store_prefix: Some("outgoing/"),
    schema: Some(|| schemars::schema_for!(crate::objects::outgoing::OutgoingDef)),
    deletable: true,
};

pub const SECURITY: KindInfo = KindInfo {
    path: "security",
    singular: "security definition",
    title: "Security definitions",
    aliases: &["sec", "securities"],
    store_prefix: Some("security/"),
    schema: Some(|| schemars::schema_for!(crate::objects::SecurityInput)),
    deletable: true,
};

pub const JOB: KindInfo = KindInfo {
    path: "jobs",
    singular: "job",
    title: "Jobs",
    aliases: &["job"],
    store_prefix: Some("jobs/"),
    schema: Some(|| schemars::schema_for!(crate::objects::jobs::JobDef)),
    deletable: true,
};

pub const SERVICE: KindInfo = KindInfo {
    path: "services",
    singular: "service",
    title: "Services",
    aliases: &["service", "svc"],
    store_prefix: None,
    schema: None,
    deletable: false,
};

pub const MODULE: KindInfo = KindInfo {
    path: "deploy",
    singular: "module",
    title: "Modules",
    aliases: &["module", "modules"],
    store_prefix: Some("modules/"),
    schema: None,
    deletable: false,
};

pub const USER: KindInfo = KindInfo {
    path: "users",
    singular: "user",
    title: "Users",
    aliases: &["user"],
    store_prefix: Some("users/"),
    schema: None,
    deletable: true,
};

pub const TOKEN: KindInfo = KindInfo {
    path: "tokens",
    singular: "token",
    title: "API tokens",
    aliases: &["token"],
    store_prefix: Some("tokens/"),
    schema: None,
    deletable: true,
};

/// The configured kinds (`shoal apply`, the web admin's forms), in the order pages show
/// them.
pub const CONFIGURED: &[&KindInfo] = &[&CHANNEL, &OUTGOING, &SECURITY, &JOB];

/// Every kind.
pub const ALL: &[&KindInfo] = &[
    &CHANNEL, &OUTGOING, &SECURITY, &JOB, &SERVICE, &MODULE, &USER, &TOKEN,
];

/// The kind a name stands for: its path, its singular or an alias, any case.
pub fn find(name: &str) -> Option<&'static KindInfo> {
    let n = name.to_ascii_lowercase();
    ALL.iter()
        .copied()
        .find(|k| k.path == n || k.singular == n || k.aliases.contains(&n.as_str()))
}

impl KindInfo {
    /// Its name on the command line (`channel`, `module`).
    pub fn cli_name(&self) -> &'static str {
        match self.path {
            "deploy" => "module",
            p => p.strip_suffix('s').unwrap_or(p),
        }
    }

    /// Its JSON Schema; a kind without one has an empty schema.
    pub fn schema(&self) -> schemars::Schema {
        self.schema
            .map_or_else(|| schemars::json_schema!({}), |f| f())
    }
}

/// The names [`find`] takes, one per kind, for messages.
pub fn names() -> String {
    ALL.iter()
        .map(|k| k.cli_name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_finds_one_kind() {
        let mut seen = std::collections::HashSet::new();
        for k in ALL {
            for n in std::iter::once(k.path).chain(k.aliases.iter().copied()) {
                assert!(seen.insert(n), "{n} names two kinds");
                assert_eq!(find(n).map(|f| f.path), Some(k.path));
            }
        }
        assert!(find("gizmo").is_none());
        for k in CONFIGURED {
            assert!(k.schema.is_some() && k.store_prefix.is_some(), "{}", k.path);
        }
    }
}
