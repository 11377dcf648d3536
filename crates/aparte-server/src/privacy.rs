//! The /privacy page, written from the running configuration, so what it says
//! is what this server does.

use crate::config::{AddressLogging, Config, Tls};

/// The page in English or French.
pub fn render(c: &Config, french: bool) -> String {
    let t = if french { &FR } else { &EN };
    let addresses = match c.log_addresses {
        AddressLogging::None => t.addr_none.to_string(),
        AddressLogging::Truncated => t.addr_truncated.to_string(),
    };
    let tls = match c.tls {
        Tls::Off => t.tls_off,
        Tls::Files { .. } => t.tls_files,
        Tls::SelfSigned => t.tls_self,
    };
    let lang = if french { "fr" } else { "en" };
    let other = if french {
        r#"<a href="/privacy?lang=en" hreflang="en" lang="en">English</a>"#
    } else {
        r#"<a href="/privacy?lang=fr" hreflang="fr" lang="fr">Français</a>"#
    };
    let items = |list: &[String]| -> String {
        list.iter()
            .map(|i| format!("<li>{i}</li>"))
            .collect::<Vec<_>>()
            .join("\n        ")
    };
    let never = items(&t.never.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let memory = items(&t.memory.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let stored = items(&[
        t.stored_what.to_string(),
        t.stored_where.to_string(),
        t.stored_retention
            .replace("{days}", &c.retention_days.to_string()),
        t.stored_default.to_string(),
    ]);
    let logs = items(&[
        addresses,
        t.logs_never.to_string(),
        format!("{} <code>{}</code>", t.logs_level, escape(&c.log)),
        t.logs_cap.to_string(),
    ]);
    let limits = items(&[
        t.limit_join.replace("{n}", &c.join_rate.to_string()),
        t.limit_passcode
            .replace("{n}", &c.passcode_rate.to_string()),
        t.limit_room
            .replace("{n}", &c.max_participants.to_string())
            .replace("{l}", &c.max_lobby.to_string()),
    ]);
    format!(
        r#"<!doctype html>
<html lang="{lang}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="/css/app.css">
</head>
<body class="privacy">
  <main class="privacy-page">
    <p class="lang-switch">{other}</p>
    <h1>{title}</h1>
    <p>{intro}</p>
    <h2>{h_never}</h2>
    <ul>
        {never}
    </ul>
    <h2>{h_memory}</h2>
    <ul>
        {memory}
    </ul>
    <h2>{h_stored}</h2>
    <ul>
        {stored}
    </ul>
    <h2>{h_logs}</h2>
    <ul>
        {logs}
    </ul>
    <h2>{h_limits}</h2>
    <ul>
        {limits}
    </ul>
    <h2>{h_transport}</h2>
    <p>{tls}</p>
    <p>{third}</p>
    <p><a href="/">{back}</a></p>
  </main>
</body>
</html>
"#,
        title = t.title,
        intro = t.intro,
        h_never = t.h_never,
        h_memory = t.h_memory,
        h_stored = t.h_stored,
        h_logs = t.h_logs,
        h_limits = t.h_limits,
        h_transport = t.h_transport,
        third = t.third,
        back = t.back,
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Text {
    title: &'static str,
    intro: &'static str,
    h_never: &'static str,
    never: [&'static str; 4],
    h_memory: &'static str,
    memory: [&'static str; 3],
    h_stored: &'static str,
    stored_what: &'static str,
    stored_where: &'static str,
    stored_retention: &'static str,
    stored_default: &'static str,
    h_logs: &'static str,
    addr_none: &'static str,
    addr_truncated: &'static str,
    logs_never: &'static str,
    logs_level: &'static str,
    logs_cap: &'static str,
    h_limits: &'static str,
    limit_join: &'static str,
    limit_passcode: &'static str,
    limit_room: &'static str,
    h_transport: &'static str,
    tls_off: &'static str,
    tls_files: &'static str,
    tls_self: &'static str,
    third: &'static str,
    back: &'static str,
}

const EN: Text = Text {
    title: "Privacy on this Aparté server",
    intro: "This page is written by the server from its running configuration.",
    h_never: "What this server cannot read",
    never: [
        "Audio, video and screen shares: encrypted end to end in each browser (SFrame, keys from MLS).",
        "Chat messages and display names: encrypted end to end; a name waiting in the lobby is sealed with a key from the meeting link.",
        "The meeting link's secret (the part after #): browsers never send it.",
        "Your passcode: only an argon2 verifier of it is kept, while the room exists.",
    ],
    h_memory: "What it holds in memory during a meeting, and deletes when the meeting ends",
    memory: [
        "Opaque participant numbers, who is host or moderator, who waits in the lobby.",
        "Network addresses, only to carry media and to rate-limit joins; never written to disk.",
        "Encrypted messages in transit, and hashes of seats (reconnect tokens) revoked by a removal.",
    ],
    h_stored: "What it stores",
    stored_what: "Only rooms a host made persistent: a hash of the room id, hashes of the host and moderator keys, whether the lobby is on, and the passcode's argon2 verifier. No names, addresses, chat or media.",
    stored_where: "On this server's own disk, readable only by the account that runs it; never sent elsewhere.",
    stored_retention: "A persistent room is deleted {days} days after its last meeting, or when its host makes it not persistent.",
    stored_default: "Every other meeting leaves nothing behind.",
    h_logs: "What it logs",
    addr_none: "No client network address appears in any log.",
    addr_truncated: "Client network addresses appear only truncated to their network (/24 for IPv4, /48 for IPv6).",
    logs_never: "Names, chat text, passcodes, keys, seats, room ids and link secrets never appear in logs.",
    logs_level: "Log filter:",
    logs_cap: "This holds at every log level: the libraries the server is built on never log below \"info\", so their detailed messages (network addresses, connection keys, message contents) are never written.",
    h_limits: "Limits against abuse",
    limit_join: "At most {n} join attempts per network address per minute.",
    limit_passcode: "At most {n} wrong passcodes per room and per address per minute.",
    limit_room: "At most {n} participants per room and {l} people waiting in a lobby.",
    h_transport: "Connections",
    tls_off: "This server speaks plain HTTP: fine on this computer; on a network, put it behind HTTPS or start it with a certificate.",
    tls_files: "This server speaks HTTPS with its operator's certificate.",
    tls_self: "This server speaks HTTPS with a certificate it made itself: check its fingerprint with the operator.",
    third: "The page loads nothing from any other server: no fonts, analytics or trackers.",
    back: "Back to Aparté",
};

const FR: Text = Text {
    title: "Confidentialité sur ce serveur Aparté",
    intro: "Cette page est écrite par le serveur à partir de sa configuration en cours.",
    h_never: "Ce que ce serveur ne peut pas lire",
    never: [
        "L’audio, la vidéo et les partages d’écran : chiffrés de bout en bout dans chaque navigateur (SFrame, clés issues de MLS).",
        "Les messages et les noms affichés : chiffrés de bout en bout ; un nom en salle d’attente est scellé avec une clé tirée du lien de la réunion.",
        "Le secret du lien de réunion (la partie après #) : les navigateurs ne l’envoient jamais.",
        "Votre code d’accès : seul un vérificateur argon2 en est gardé, tant que la salle existe.",
    ],
    h_memory: "Ce qu’il garde en mémoire pendant une réunion, et efface à la fin",
    memory: [
        "Des numéros de participant opaques, qui est hôte ou modérateur, qui attend en salle d’attente.",
        "Les adresses réseau, seulement pour acheminer les médias et limiter les tentatives ; jamais écrites sur disque.",
        "Les messages chiffrés en transit, et les empreintes des places (jetons de reconnexion) révoquées par une exclusion.",
    ],
    h_stored: "Ce qu’il enregistre",
    stored_what: "Seulement les salles qu’un hôte a rendues permanentes : une empreinte de l’identifiant de salle, les empreintes des clés d’hôte et de modérateur, l’état de la salle d’attente et le vérificateur argon2 du code. Ni noms, ni adresses, ni messages, ni médias.",
    stored_where: "Sur le disque de ce serveur, lisible seulement par le compte qui le fait tourner ; jamais envoyé ailleurs.",
    stored_retention: "Une salle permanente est supprimée {days} jours après sa dernière réunion, ou dès que son hôte la rend non permanente.",
    stored_default: "Toute autre réunion ne laisse aucune trace.",
    h_logs: "Ce qu’il journalise",
    addr_none: "Aucune adresse réseau de client n’apparaît dans les journaux.",
    addr_truncated: "Les adresses réseau des clients n’apparaissent que tronquées à leur réseau (/24 en IPv4, /48 en IPv6).",
    logs_never: "Les noms, messages, codes d’accès, clés, places, identifiants de salle et secrets de lien n’apparaissent jamais dans les journaux.",
    logs_level: "Filtre de journalisation :",
    logs_cap: "Cela vaut à tous les niveaux de journalisation : les bibliothèques sur lesquelles le serveur repose ne journalisent jamais en dessous de « info », si bien que leurs messages détaillés (adresses réseau, clés de connexion, contenus des messages) ne sont jamais écrits.",
    h_limits: "Limites contre les abus",
    limit_join: "Au plus {n} tentatives d’entrée par adresse réseau et par minute.",
    limit_passcode: "Au plus {n} codes erronés par salle et par adresse et par minute.",
    limit_room: "Au plus {n} participants par salle et {l} personnes en salle d’attente.",
    h_transport: "Connexions",
    tls_off: "Ce serveur parle HTTP sans chiffrement : convenable sur cet ordinateur ; sur un réseau, placez-le derrière HTTPS ou démarrez-le avec un certificat.",
    tls_files: "Ce serveur parle HTTPS avec le certificat de son exploitant.",
    tls_self: "Ce serveur parle HTTPS avec un certificat qu’il a créé lui-même : vérifiez son empreinte auprès de l’exploitant.",
    third: "La page ne charge rien depuis un autre serveur : ni polices, ni mesure d’audience, ni traceurs.",
    back: "Retour à Aparté",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_follows_the_configuration() {
        let mut c = Config {
            retention_days: 12,
            ..Config::default()
        };
        let en = render(&c, false);
        assert!(en.contains("12 days after its last meeting"));
        assert!(en.contains("No client network address appears"));
        c.log_addresses = AddressLogging::Truncated;
        c.data_dir = "/srv/secret-place".into();
        let fr = render(&c, true);
        assert!(fr.contains("tronquées"));
        assert!(!fr.contains("secret-place"), "no server path is shown");
        assert!(!fr.contains("<script"));
    }
}
