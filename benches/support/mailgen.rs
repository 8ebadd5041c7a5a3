//! Realistic generated mail for the benchmarks: the shapes a CRM user's mailbox is made of,
//! deterministic from a seed so that every run measures the same bytes.
//!
//! Sizes follow what mailbox studies report: most messages are a few kilobytes of headers and
//! text, a long tail carries attachments. Text-only messages are log-normal around 8 KB
//! (1 KB to 200 KB); messages with attachments (15% by default) around 60 KB, up to 2 MB. The
//! headers are what real delivered mail carries (Received chains, DKIM and ARC signatures,
//! authentication results), bodies are plain text or multipart/alternative with HTML, in
//! quoted-printable, base64 or 8bit, with quoted replies; attachments are incompressible
//! base64 (PDF, PNG, DOCX). Newsletters carry `List-Id` and `List-Unsubscribe`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Changes whenever the generator makes different bytes for the same seed: kept benchmark
/// stores carry it in their names.
pub const GENERATOR_VERSION: u32 = 1;

/// Who may appear on a generated message.
#[derive(Debug, Clone)]
pub struct Cast {
    /// The mailbox owner.
    pub owner: String,
    /// Colleagues at the company domain.
    pub colleagues: Vec<String>,
    /// CRM contacts outside the company.
    pub contacts: Vec<String>,
    /// Everyone else: vendors, strangers, newsletters.
    pub strangers: Vec<String>,
}

impl Cast {
    /// `contacts` contacts at `contact_domains` customer domains, 20 colleagues and 400
    /// strangers, for the owner `owner@abcorp.com`.
    pub fn new(owner: &str, contacts: usize, contact_domains: usize) -> Cast {
        Cast {
            owner: owner.to_string(),
            colleagues: (0..20)
                .map(|i| format!("colleague{i}@abcorp.com"))
                .collect(),
            contacts: contact_addresses(contacts, contact_domains),
            strangers: (0..400)
                .map(|i| format!("person{i}@vendor{}.example", i % 97))
                .collect(),
        }
    }
}

/// The contact addresses [`Cast::new`] uses, so a benchmark can import the same contacts.
pub fn contact_addresses(count: usize, domains: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("contact{i}@customer{}.example", i % domains.max(1)))
        .collect()
}

/// What the mix of generated mail looks like.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Share of messages with a contact in From, To or Cc.
    pub with_contact: f64,
    /// Share of messages with attachments.
    pub with_attachment: f64,
    /// Share of messages that are newsletters or notifications (List-Id, ...).
    pub automated: f64,
    /// Share sent by the owner.
    pub outgoing: f64,
    /// Largest message, in bytes.
    pub max_bytes: usize,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            with_contact: 0.5,
            with_attachment: 0.15,
            automated: 0.1,
            outgoing: 0.3,
            max_bytes: 2 * 1024 * 1024,
        }
    }
}

/// One generated message and what the generator put in it.
#[derive(Debug, Clone)]
pub struct Generated {
    pub raw: Vec<u8>,
    pub message_id: String,
    /// The contact on it, if any.
    pub contact: Option<String>,
    pub attachments: usize,
}

pub struct MailGenerator {
    rng: StdRng,
    cast: Cast,
    mix: Mix,
    next: usize,
    /// Seconds since the epoch of the first message; each next one is a few minutes later.
    clock: i64,
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "at",
    "by",
    "this",
    "have",
    "from",
    "or",
    "an",
    "they",
    "which",
    "you",
    "we",
    "our",
    "will",
    "can",
    "would",
    "about",
    "contract",
    "renewal",
    "invoice",
    "pricing",
    "meeting",
    "quarter",
    "proposal",
    "delivery",
    "schedule",
    "thanks",
    "please",
    "attached",
    "review",
    "budget",
    "order",
    "shipment",
    "support",
    "ticket",
    "account",
    "license",
    "seats",
    "team",
    "update",
    "call",
    "tomorrow",
    "next",
    "week",
    "regards",
    "question",
    "answer",
    "discount",
    "project",
    "timeline",
    "milestone",
    "sign",
    "agreement",
    "legal",
    "procurement",
    "demo",
    "feedback",
    "onboarding",
    "training",
    "integration",
    "report",
    "numbers",
    "forecast",
    "pipeline",
    "customer",
    "partner",
    "vendor",
    "terms",
    "payment",
    "overdue",
    "reminder",
    "confirm",
    "available",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "office",
    "Amsterdam",
    "Berlin",
    "London",
    "Lisbon",
    "warehouse",
    "product",
    "roadmap",
    "feature",
    "release",
    "bug",
    "fix",
    "priority",
    "escalation",
    "manager",
    "director",
    "board",
    "draft",
    "final",
    "version",
    "spreadsheet",
    "slides",
    "notes",
    "minutes",
    "agenda",
    "lunch",
    "travel",
    "hotel",
    "flight",
    "conference",
    "booth",
    "lead",
    "opportunity",
    "close",
    "deal",
    "€1,200",
    "$45,000",
    "Q3",
    "2024",
    "SLA",
    "uptime",
    "migration",
    "café",
    "naïve",
    "Zürich",
];

const ATTACHMENT_TYPES: &[(&str, &str)] = &[
    ("application/pdf", "pdf"),
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
];

impl MailGenerator {
    pub fn new(seed: u64, cast: Cast, mix: Mix) -> MailGenerator {
        MailGenerator {
            rng: StdRng::seed_from_u64(seed),
            cast,
            mix,
            next: 0,
            // 2024-09-02T08:00:00Z: fixed, so the same seed gives the same bytes on any day.
            clock: 1_725_264_000,
        }
    }

    pub fn cast(&self) -> &Cast {
        &self.cast
    }

    /// The next message; `contact` forces (true) or forbids (false) a contact on it, `None`
    /// leaves it to the mix.
    pub fn message_with(&mut self, contact: Option<bool>) -> Generated {
        let index = self.next;
        self.next += 1;
        self.clock += self.rng.random_range(30..600);
        let with_contact = contact.unwrap_or_else(|| self.rng.random_bool(self.mix.with_contact));
        let automated = self.rng.random_bool(self.mix.automated);
        let outgoing = !automated && self.rng.random_bool(self.mix.outgoing);
        let with_attachment = self.rng.random_bool(self.mix.with_attachment);

        let contact = with_contact.then(|| self.pick_contact());
        let other = if automated {
            format!("newsletter@news{}.example", index % 13)
        } else {
            self.pick(&self.cast.strangers.clone())
        };
        let (from, mut to, mut cc) = if outgoing {
            (
                self.cast.owner.clone(),
                vec![contact.clone().unwrap_or_else(|| other.clone())],
                Vec::new(),
            )
        } else {
            (
                contact.clone().unwrap_or_else(|| other.clone()),
                vec![self.cast.owner.clone()],
                Vec::new(),
            )
        };
        for _ in 0..self.rng.random_range(0..3) {
            let colleague = self.pick(&self.cast.colleagues.clone());
            if self.rng.random_bool(0.5) {
                to.push(colleague);
            } else {
                cc.push(colleague);
            }
        }
        if !with_contact && self.rng.random_bool(0.3) {
            cc.push(self.pick(&self.cast.strangers.clone()));
        }

        let target = self.target_size(with_attachment);
        let message_id = format!(
            "<gen-{index}-{:08x}@mail.example>",
            self.rng.random::<u32>()
        );
        let mut raw = String::with_capacity(target + 4096);
        self.headers(&mut raw, &from, &to, &cc, &message_id, automated, index);
        let header_len = raw.len();
        let attachment_bytes = if with_attachment {
            // Text takes 2-20 KB; the rest is attachments, which base64 makes a third larger.
            let encoded = target.saturating_sub(header_len + self.rng.random_range(2_000..20_000));
            (encoded * 3 / 4).max(1_000)
        } else {
            0
        };
        let text_bytes = target
            .saturating_sub(header_len + attachment_bytes * 4 / 3)
            .max(200);
        let attachments = self.body(&mut raw, text_bytes, attachment_bytes, automated);
        Generated {
            raw: raw.into_bytes(),
            message_id,
            contact,
            attachments,
        }
    }

    pub fn message(&mut self) -> Generated {
        self.message_with(None)
    }

    fn pick(&mut self, from: &[String]) -> String {
        from[self.rng.random_range(0..from.len())].clone()
    }

    /// Contacts are not equally busy: a few write most of the mail (Zipf-like).
    fn pick_contact(&mut self) -> String {
        let count = self.cast.contacts.len();
        let u: f64 = self.rng.random();
        let index = ((count as f64).powf(u) - 1.0) as usize;
        self.cast.contacts[index.min(count - 1)].clone()
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box-Muller: two uniforms make one standard normal.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * normal).exp()
    }

    fn target_size(&mut self, with_attachment: bool) -> usize {
        let size = if with_attachment {
            self.lognormal(60_000.0, 1.4)
                .clamp(4_000.0, self.mix.max_bytes as f64)
        } else {
            self.lognormal(8_000.0, 0.9).clamp(1_000.0, 200_000.0)
        };
        size as usize
    }

    fn words(&mut self, bytes: usize) -> String {
        let mut text = String::with_capacity(bytes + 64);
        let mut line = 0;
        while text.len() < bytes {
            let word = WORDS[self.rng.random_range(0..WORDS.len())];
            text.push_str(word);
            line += word.len() + 1;
            if self.rng.random_ratio(1, 14) {
                text.push_str(".\n");
                line = 0;
                if self.rng.random_ratio(1, 5) {
                    text.push('\n');
                }
            } else if line > 66 {
                text.push('\n');
                line = 0;
            } else {
                text.push(' ');
            }
        }
        text
    }

    #[allow(clippy::too_many_arguments)]
    fn headers(
        &mut self,
        raw: &mut String,
        from: &str,
        to: &[String],
        cc: &[String],
        message_id: &str,
        automated: bool,
        index: usize,
    ) {
        use std::fmt::Write;
        let date = chrono::DateTime::from_timestamp(self.clock, 0)
            .expect("a valid timestamp")
            .format("%a, %d %b %Y %H:%M:%S +0000");
        for hop in 0..self.rng.random_range(2..6) {
            let _ = write!(
                raw,
                "Received: from mx{hop}.relay{}.example (mx{hop}.relay.example [192.0.2.{}])\r\n\tby mail-gw{hop}.abcorp.com with ESMTPS id {:016x}\r\n\tfor <{}>; {date}\r\n",
                index % 7,
                self.rng.random_range(1..255),
                self.rng.random::<u64>(),
                to[0]
            );
        }
        let signature: String = (0..344)
            .map(|_| {
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                alphabet[self.rng.random_range(0..64)] as char
            })
            .collect();
        let _ = write!(
            raw,
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={}; s=s1;\r\n\th=from:to:subject:date:message-id; bh={};\r\n\tb={}\r\n",
            from.split('@').nth(1).unwrap_or("example"),
            &signature[..44],
            signature
        );
        let _ = write!(
            raw,
            "Authentication-Results: mx.abcorp.com; dkim=pass header.d={}; spf=pass; dmarc=pass\r\n",
            from.split('@').nth(1).unwrap_or("example")
        );
        let name = |address: &str| {
            let local = address.split('@').next().unwrap_or(address);
            let mut name: String = local.chars().filter(|c| c.is_alphabetic()).collect();
            if let Some(first) = name.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            name
        };
        if self.rng.random_ratio(1, 6) {
            let _ = write!(
                raw,
                "From: =?UTF-8?Q?{}_M=C3=BCller?= <{from}>\r\n",
                name(from)
            );
        } else {
            let _ = write!(raw, "From: \"{}\" <{from}>\r\n", name(from));
        }
        let list = |addresses: &[String]| {
            addresses
                .iter()
                .map(|address| format!("{} <{address}>", name(address)))
                .collect::<Vec<_>>()
                .join(",\r\n ")
        };
        let _ = write!(raw, "To: {}\r\n", list(to));
        if !cc.is_empty() {
            let _ = write!(raw, "Cc: {}\r\n", list(cc));
        }
        let length = self.rng.random_range(20..70);
        let subject = self.words(length).replace('\n', " ");
        if self.rng.random_ratio(1, 8) {
            let _ = write!(
                raw,
                "Subject: =?UTF-8?B?{}?=\r\n",
                base64(subject.as_bytes())
            );
        } else if self.rng.random_ratio(1, 3) {
            let _ = write!(raw, "Subject: Re: {}\r\n", subject.trim());
        } else {
            let _ = write!(raw, "Subject: {}\r\n", subject.trim());
        }
        let _ = write!(raw, "Date: {date}\r\nMessage-ID: {message_id}\r\n");
        if index > 0 && self.rng.random_ratio(1, 3) {
            let _ = write!(
                raw,
                "In-Reply-To: <gen-{}@mail.example>\r\nReferences: <gen-{}@mail.example>\r\n",
                index - 1,
                index - 1
            );
        }
        if automated {
            let _ = write!(
                raw,
                "List-Id: News {} <news{}.example>\r\nList-Unsubscribe: <mailto:unsubscribe@news{}.example>\r\nPrecedence: bulk\r\n",
                index % 13,
                index % 13,
                index % 13
            );
        }
        raw.push_str("MIME-Version: 1.0\r\nX-Mailer: Generated 1.0\r\n");
    }

    /// Writes the body; returns the number of attachments.
    fn body(
        &mut self,
        raw: &mut String,
        text_bytes: usize,
        attachment_bytes: usize,
        automated: bool,
    ) -> usize {
        let boundary = format!("=_b{:016x}", self.rng.random::<u64>());
        let alternative = automated || self.rng.random_bool(0.6);
        // HTML is about twice the size of its text; the text part gets the rest.
        let plain_bytes = if alternative {
            text_bytes / 3
        } else {
            text_bytes
        };
        let mut text = self.words(plain_bytes);
        if self.rng.random_ratio(1, 3) {
            let quoted = self.words(plain_bytes / 3);
            text.push_str("\nOn Monday, someone wrote:\n");
            for line in quoted.lines() {
                text.push_str("> ");
                text.push_str(line);
                text.push('\n');
            }
        }
        let attachment_count = if attachment_bytes > 0 {
            self.rng
                .random_range(1..=3)
                .min(attachment_bytes / 1_000)
                .max(1)
        } else {
            0
        };
        if attachment_count == 0 && !alternative {
            self.text_part(raw, &text, true);
            return 0;
        }
        let outer = if attachment_count > 0 {
            "mixed"
        } else {
            "alternative"
        };
        raw.push_str(&format!(
            "Content-Type: multipart/{outer}; boundary=\"{boundary}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n"
        ));
        if attachment_count > 0 && alternative {
            let inner = format!("{boundary}-alt");
            raw.push_str(&format!(
                "--{boundary}\r\nContent-Type: multipart/alternative; boundary=\"{inner}\"\r\n\r\n"
            ));
            self.alternative(raw, &inner, &text);
            raw.push_str(&format!("--{inner}--\r\n"));
        } else if alternative {
            self.alternative(raw, &boundary, &text);
        } else {
            raw.push_str(&format!("--{boundary}\r\n"));
            self.text_part(raw, &text, false);
        }
        for n in 0..attachment_count {
            let (content_type, extension) =
                ATTACHMENT_TYPES[self.rng.random_range(0..ATTACHMENT_TYPES.len())];
            let bytes: Vec<u8> = (0..attachment_bytes / attachment_count)
                .map(|_| self.rng.random())
                .collect();
            raw.push_str(&format!(
                "--{boundary}\r\nContent-Type: {content_type}; name=\"document-{n}.{extension}\"\r\nContent-Disposition: attachment; filename=\"document-{n}.{extension}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            ));
            for line in base64(&bytes).as_bytes().chunks(76) {
                raw.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                raw.push_str("\r\n");
            }
        }
        raw.push_str(&format!("--{boundary}--\r\n"));
        attachment_count
    }

    fn alternative(&mut self, raw: &mut String, boundary: &str, text: &str) {
        raw.push_str(&format!("--{boundary}\r\n"));
        self.text_part(raw, text, false);
        raw.push_str(&format!(
            "--{boundary}\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        ));
        let mut html = String::from(
            "<html><head><style>p{margin:0}</style></head><body><table width=\"100%\"><tr><td>\n",
        );
        for paragraph in text.split("\n\n") {
            html.push_str("<p style=\"font-family:Arial,sans-serif;font-size:14px\">");
            html.push_str(&paragraph.replace('\n', "<br>\n"));
            html.push_str("</p>\n");
        }
        html.push_str("</td></tr></table></body></html>\n");
        raw.push_str(&quoted_printable(&html));
        raw.push_str("\r\n");
    }

    /// A text/plain part with its headers, in one of the transfer encodings mail uses.
    fn text_part(&mut self, raw: &mut String, text: &str, top_level: bool) {
        let encoding = self.rng.random_range(0..3);
        let (name, body) = match encoding {
            0 => ("quoted-printable", quoted_printable(text)),
            1 => ("base64", {
                let encoded = base64(text.as_bytes());
                let mut wrapped = String::with_capacity(encoded.len() * 78 / 76 + 2);
                for line in encoded.as_bytes().chunks(76) {
                    wrapped.push_str(std::str::from_utf8(line).expect("ASCII"));
                    wrapped.push_str("\r\n");
                }
                wrapped
            }),
            _ => ("8bit", text.replace('\n', "\r\n")),
        };
        let _ = top_level;
        raw.push_str(&format!(
            "Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: {name}\r\n\r\n{body}\r\n"
        ));
    }
}

pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Quoted-printable with soft line breaks at 76 characters, as mail clients write it.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 11 / 10);
    for line in text.split('\n') {
        let mut width = 0;
        for byte in line.bytes() {
            let encoded = match byte {
                b'=' => "=3D".to_string(),
                b' '..=b'~' => (byte as char).to_string(),
                _ => format!("={byte:02X}"),
            };
            if width + encoded.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += encoded.len();
            out.push_str(&encoded);
        }
        out.push_str("\r\n");
    }
    out
}

/// Summary statistics of a set of sizes, for the report.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SizeSummary {
    pub count: usize,
    pub total_bytes: usize,
    pub min_bytes: usize,
    pub median_bytes: usize,
    pub p90_bytes: usize,
    pub max_bytes: usize,
}

pub fn summarize(sizes: impl IntoIterator<Item = usize>) -> SizeSummary {
    let mut sizes: Vec<usize> = sizes.into_iter().collect();
    sizes.sort_unstable();
    let at = |q: f64| sizes[((sizes.len() - 1) as f64 * q) as usize];
    SizeSummary {
        count: sizes.len(),
        total_bytes: sizes.iter().sum(),
        min_bytes: sizes[0],
        median_bytes: at(0.5),
        p90_bytes: at(0.9),
        max_bytes: *sizes.last().expect("at least one size"),
    }
}
