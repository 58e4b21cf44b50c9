//! TOTVS' dataset and model: subscribers and their protocols with seeded interactions, the
//! field styles list items are sent in, and the shapes of the JSON bodies built from them.

use std::collections::HashMap;

use serde::Serialize;
use serde::ser::SerializeMap;

use super::dataset::BENEFICIARIES;

/// The item field names differ between TOTVS doc versions; each subscriber answers in one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FieldStyle {
    /// The seed's `subscriber-_id` (a Confluence rendering artefact that clients meet anyway).
    Seed,
    Camel,
    Hyphen,
    Snake,
}

pub(super) struct FieldNames {
    subscriber_id: &'static str,
    professional_name: &'static str,
    professional_council: &'static str,
    professional_council_number: &'static str,
    /// The seed documents no state field.
    state_abbreviation: Option<&'static str>,
    id_on_health_insurer: &'static str,
    auth_type: &'static str,
    solicitation_date: &'static str,
    analysis_date: &'static str,
}

impl FieldStyle {
    pub(super) fn names(self) -> &'static FieldNames {
        match self {
            FieldStyle::Seed => &FieldNames {
                subscriber_id: "subscriber-_id",
                professional_name: "professional-_name",
                professional_council: "professional-_council",
                professional_council_number: "professional-_council-_number",
                state_abbreviation: None,
                id_on_health_insurer: "id-_on-_health-_insurer",
                auth_type: "auth-_type",
                solicitation_date: "solicitation_date",
                analysis_date: "analysis_date",
            },
            FieldStyle::Camel => &FieldNames {
                subscriber_id: "subscriberId",
                professional_name: "professionalName",
                professional_council: "professionalCouncil",
                professional_council_number: "professionalCouncilNumber",
                state_abbreviation: Some("stateAbbreviation"),
                id_on_health_insurer: "idOnHealthInsurer",
                auth_type: "authType",
                solicitation_date: "solicitationDate",
                analysis_date: "analysisDate",
            },
            FieldStyle::Hyphen => &FieldNames {
                subscriber_id: "subscriber-id",
                professional_name: "professional-name",
                professional_council: "professional-council",
                professional_council_number: "professional-council-number",
                state_abbreviation: Some("state-abbreviation"),
                id_on_health_insurer: "id-on-health-insurer",
                auth_type: "auth-type",
                solicitation_date: "solicitation-date",
                analysis_date: "analysis-date",
            },
            FieldStyle::Snake => &FieldNames {
                subscriber_id: "subscriber_id",
                professional_name: "professional_name",
                professional_council: "professional_council",
                professional_council_number: "professional_council_number",
                state_abbreviation: Some("state_abbreviation"),
                id_on_health_insurer: "id_on_health_insurer",
                auth_type: "auth_type",
                solicitation_date: "solicitation_date",
                analysis_date: "analysis_date",
            },
        }
    }
}

/// (name, council, council number, state); empty strings where the upstream has nothing.
const PROFESSIONALS: &[(&str, &str, &str, &str)] = &[
    ("ANDRE", "CRM", "334455", "SP"),
    ("VINICIUS", "CRM", "1234567", "SP"),
    ("MARINA COSTA REIS", "CRM", "98231", "RJ"),
    ("FERNANDO TAKAHASHI", "CRO", "45120", "SP"),
    ("LUCIANA PRATES", "CRM", "55873", "MG"),
    ("RAFAEL ANTUNES", "CREFITO", "112233-F", "PR"),
    ("CLINICA SAO LUCAS", "", "", ""),
];

/// (protocol, professional index, status, auth type, authorization number, requested, analyzed)
type TotvsRow = (
    &'static str,
    usize,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

pub(super) const HERNANDES_SUBSCRIBER: &str = "00011008000027010";
/// The documented protocol list item, served verbatim as Hernandes' first item.
const FIXTURE_PROTOCOL: &str = "41750520230601000030";
/// The documented attachments request targets this one; it waits for a document.
const FIXTURE_ATTACHMENT_PROTOCOL: &str = "41750520230620000004";

#[rustfmt::skip]
const SUBSCRIBERS: &[(&str, FieldStyle, &[TotvsRow])] = &[
    (HERNANDES_SUBSCRIBER, FieldStyle::Seed, &[
        (FIXTURE_PROTOCOL, 0, "7", "", "", "", ""),
        ("41750520230620000003", 1, "7", "", "", "2023-06-20", ""),
        (FIXTURE_ATTACHMENT_PROTOCOL, 1, "9", "", "", "2023-06-20", ""),
        ("41750520230415000012", 0, "1", "2", "000120230400000871", "2023-04-15", "2023-04-17"),
    ]),
    ("00011008000031015", FieldStyle::Camel, &[
        ("41750520240108000011", 2, "1", "2", "000120240100000112", "2024-01-08", "2024-01-09"),
        ("41750520240115000027", 4, "8", "3", "", "2024-01-15", "2024-01-19"),
        ("41750520240122000008", 3, "1", "4", "000120240100000257", "2024-01-22", "2024-01-22"),
        ("41750520240205000014", 2, "9", "2", "", "2024-02-05", ""),
        ("41750520240212000031", 5, "6", "2", "", "2024-02-12", ""),
        ("41750520240219000005", 4, "2", "3", "000120240200000398", "2024-02-19", "2024-02-23"),
        ("41750520240304000019", 6, "7", "", "", "2024-03-04", ""),
        ("41750520240311000022", 2, "3", "2", "", "2024-03-11", "2024-03-12"),
        ("41750520240318000003", 3, "1", "4", "000120240300000541", "2024-03-18", "2024-03-18"),
        ("41750520240401000016", 4, "9", "3", "", "2024-04-01", ""),
        ("41750520240408000029", 5, "8", "2", "", "2024-04-08", "2024-04-10"),
        ("41750520240415000007", 2, "5", "2", "", "2024-04-15", ""),
        ("41750520240422000012", 1, "1", "2", "000120240400000733", "2024-04-22", "2024-04-23"),
        ("41750520240506000024", 6, "6", "3", "", "2024-05-06", ""),
        ("41750520240513000001", 2, "9", "", "", "2024-05-13", ""),
        ("41750520240520000018", 4, "8", "3", "", "2024-05-20", "2024-05-24"),
        ("41750520240603000009", 3, "2", "4", "000120240600000845", "2024-06-03", "2024-06-04"),
        ("41750520240610000033", 5, "7", "2", "", "2024-06-10", ""),
        ("41750520240617000015", 2, "1", "2", "000120240600000902", "2024-06-17", "2024-06-17"),
        ("41750520240624000006", 1, "3", "3", "", "2024-06-24", "2024-06-28"),
        ("41750520240701000021", 4, "9", "2", "", "2024-07-01", ""),
        ("41750520240708000010", 6, "6", "2", "", "2024-07-08", ""),
        ("41750520240710000017", 3, "8", "4", "", "2024-07-10", "2024-07-11"),
        ("41750520240715000004", 5, "7", "", "", "", ""),
        ("41750520240722000028", 2, "9", "3", "", "2024-07-22", ""),
        ("41750520240729000013", 4, "1", "3", "000120240700001077", "2024-07-29", "2024-07-30"),
        ("41750520240805000002", 1, "7", "2", "", "2024-08-05", ""),
    ]),
    ("00011008000045002", FieldStyle::Hyphen, &[
        ("41750520230905000041", 4, "1", "2", "000120230900000618", "2023-09-05", "2023-09-06"),
        ("41750520231002000017", 2, "8", "3", "", "2023-10-02", "2023-10-04"),
        ("41750520231106000009", 6, "9", "2", "", "2023-11-06", ""),
        ("41750520231204000026", 5, "3", "2", "", "2023-12-04", "2023-12-05"),
        ("41750520240108000035", 2, "5", "", "", "2024-01-08", ""),
        ("41750520240311000040", 4, "7", "2", "", "", ""),
    ]),
    // Protheus' native date format leaks through for this one.
    ("00011008000045100", FieldStyle::Snake, &[
        ("41750520240220000044", 3, "1", "4", "000120240200000466", "20240220", "20240221"),
        ("41750520240327000038", 2, "9", "2", "", "20240327", ""),
        ("41750520240503000046", 4, "6", "3", "", "20240503", ""),
        ("41750520240614000032", 3, "8", "4", "", "20240614", "20240618"),
        ("41750520240709000043", 2, "2", "2", "000120240700001012", "20240709", "20240710"),
    ]),
    ("00020015000112003", FieldStyle::Camel, &[
        ("41750520240402000051", 4, "1", "2", "000120240400000705", "2024-04-02", "2024-04-02"),
        ("41750520240516000052", 2, "9", "2", "", "2024-05-16", ""),
        ("41750520240628000053", 6, "7", "3", "", "2024-06-28", ""),
        ("41750520240730000054", 5, "3", "2", "", "2024-07-30", "2024-08-01"),
    ]),
    ("00020015000198016", FieldStyle::Hyphen, &[]),
];

#[derive(Clone, Debug, Serialize)]
pub(super) struct Interaction {
    sector: String,
    name: String,
    interaction_date: String,
    default_reason: String,
    observation: String,
}

/// One authorization protocol, independent of the field style it is sent in.
#[derive(Clone, Debug)]
pub(super) struct Protocol {
    pub(super) number: String,
    pub(super) subscriber_id: String,
    pub(super) name: String,
    pub(super) professional_name: String,
    pub(super) professional_council: String,
    pub(super) professional_council_number: String,
    pub(super) state_abbreviation: String,
    pub(super) status: String,
    pub(super) authorization: String,
    pub(super) auth_type: String,
    pub(super) requested_on: String,
    pub(super) analyzed_on: String,
    pub(super) interactions: Vec<Interaction>,
    pub(super) attachments: Vec<String>,
}

pub(super) struct Subscriber {
    pub(super) name: String,
    pub(super) style: FieldStyle,
    /// `YYYYMMDD` instead of `YYYY-MM-DD` for dates of protocols created here.
    pub(super) compact_dates: bool,
    /// Indexes into `Totvs::protocols`, in storage order.
    pub(super) protocols: Vec<usize>,
}

pub(super) struct Totvs {
    pub(super) subscribers: HashMap<String, Subscriber>,
    pub(super) protocols: Vec<Protocol>,
    pub(super) by_number: HashMap<String, usize>,
    next_seq: u32,
}

const DEFAULT_SECTOR: &str = "DEPARTAMENTO PADRAO";
/// For interactions of protocols that carry no date at all.
const FALLBACK_DATE: &str = "2023-06-20";

impl Totvs {
    pub(super) fn seed() -> Totvs {
        let mut totvs = Totvs {
            subscribers: HashMap::new(),
            protocols: Vec::new(),
            by_number: HashMap::new(),
            next_seq: 900_001,
        };
        for &(subscriber_id, style, rows) in SUBSCRIBERS {
            let name = BENEFICIARIES
                .iter()
                .find(|b| b.subscriber_id == Some(subscriber_id))
                .map_or_else(String::new, |b| b.name.to_uppercase());
            let compact_dates = rows.iter().any(|row| is_compact_date(row.5));
            let mut subscriber = Subscriber {
                name: name.clone(),
                style,
                compact_dates,
                protocols: Vec::with_capacity(rows.len()),
            };
            for &(number, professional, status, auth_type, authorization, requested, analyzed) in
                rows
            {
                let (prof_name, council, council_number, state) = PROFESSIONALS[professional];
                let mut protocol = Protocol {
                    number: number.to_owned(),
                    subscriber_id: subscriber_id.to_owned(),
                    name: name.clone(),
                    professional_name: prof_name.to_owned(),
                    professional_council: council.to_owned(),
                    professional_council_number: council_number.to_owned(),
                    state_abbreviation: state.to_owned(),
                    status: status.to_owned(),
                    authorization: authorization.to_owned(),
                    auth_type: auth_type.to_owned(),
                    requested_on: requested.to_owned(),
                    analyzed_on: analyzed.to_owned(),
                    interactions: Vec::new(),
                    attachments: Vec::new(),
                };
                protocol.interactions = seed_interactions(&protocol, totvs.protocols.len());
                subscriber.protocols.push(totvs.insert(protocol));
            }
            totvs
                .subscribers
                .insert(subscriber_id.to_owned(), subscriber);
        }
        totvs
    }

    pub(super) fn insert(&mut self, protocol: Protocol) -> usize {
        let index = self.protocols.len();
        self.by_number.insert(protocol.number.clone(), index);
        self.protocols.push(protocol);
        index
    }

    /// A fresh 20-digit number in the upstream's shape: prefix, request date, sequence.
    pub(super) fn new_protocol_number(&mut self, today: chrono::NaiveDate) -> String {
        loop {
            let number = format!("417505{}{:06}", today.format("%Y%m%d"), self.next_seq);
            self.next_seq = if self.next_seq >= 999_999 {
                1
            } else {
                self.next_seq + 1
            };
            if !self.by_number.contains_key(&number) {
                return number;
            }
        }
    }
}

/// 0..4 interactions per protocol, varied by position; status 9 always asks for a document.
fn seed_interactions(p: &Protocol, index: usize) -> Vec<Interaction> {
    if p.number == FIXTURE_PROTOCOL || p.number == FIXTURE_ATTACHMENT_PROTOCOL {
        return vec![interaction(
            &p.name,
            "2023-06-20",
            "FALTA DE DOCUMENTAÇÃO DO BENEFICIÁRIO",
            "Encaminhar a documentação do beneficiário",
        )];
    }
    let requested = iso_date(&p.requested_on).unwrap_or_else(|| FALLBACK_DATE.to_owned());
    let analyzed = iso_date(&p.analyzed_on).unwrap_or_else(|| requested.clone());
    let mut out = Vec::new();
    if index.is_multiple_of(2) {
        out.push(interaction(
            &p.name,
            &requested,
            "SOLICITAÇÃO RECEBIDA",
            "Solicitação registrada pelo aplicativo do beneficiário.",
        ));
    }
    if index.is_multiple_of(3) {
        out.push(interaction(
            &p.name,
            &requested,
            "CONTATO COM BENEFICIÁRIO",
            "Contato telefônico realizado para confirmar os dados da solicitação.",
        ));
    }
    let outcome = match p.status.as_str() {
        "1" => Some((
            "AUTORIZAÇÃO LIBERADA",
            "Procedimento autorizado conforme solicitação.",
        )),
        "2" => Some((
            "AUTORIZAÇÃO PARCIAL",
            "Parte dos procedimentos solicitados foi autorizada; consulte a guia.",
        )),
        "3" => Some((
            "PROCEDIMENTO SEM COBERTURA",
            "O procedimento solicitado não possui cobertura contratual.",
        )),
        "6" => Some((
            "ENCAMINHADO PARA AUDITORIA",
            "Solicitação encaminhada para auditoria médica.",
        )),
        "8" => Some((
            "NEGATIVA POR CARÊNCIA",
            "Beneficiário em período de carência para o procedimento solicitado.",
        )),
        "9" if index.is_multiple_of(2) => Some((
            "FALTA DE DOCUMENTAÇÃO DO BENEFICIÁRIO",
            "Encaminhar a documentação do beneficiário",
        )),
        "9" => Some((
            "PEDIDO MÉDICO ILEGÍVEL",
            "Encaminhar novamente o pedido médico legível, com carimbo e assinatura do profissional.",
        )),
        _ => None,
    };
    if let Some((reason, observation)) = outcome {
        out.push(interaction(&p.name, &analyzed, reason, observation));
    }
    if p.status == "6" {
        out.push(interaction(
            &p.name,
            &analyzed,
            "AGUARDANDO PARECER",
            "Aguardando parecer do médico auditor.",
        ));
    }
    out
}

pub(super) fn interaction(name: &str, date: &str, reason: &str, observation: &str) -> Interaction {
    Interaction {
        sector: DEFAULT_SECTOR.to_owned(),
        name: name.to_owned(),
        interaction_date: date.to_owned(),
        default_reason: reason.to_owned(),
        observation: observation.to_owned(),
    }
}

fn is_compact_date(date: &str) -> bool {
    date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` for either stored shape; `None` for `""`.
fn iso_date(date: &str) -> Option<String> {
    if is_compact_date(date) {
        Some(format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]))
    } else if date.is_empty() {
        None
    } else {
        Some(date.to_owned())
    }
}

/// Dates compared digit by digit, so `2024-02-20` equals `20240220`.
pub(super) fn date_digits(date: &str) -> impl Iterator<Item = char> + '_ {
    date.chars().filter(|c| *c != '-')
}

/// A protocol as a list item, in its subscriber's field style.
pub(super) struct StyledProtocol<'a> {
    pub(super) protocol: &'a Protocol,
    pub(super) names: &'static FieldNames,
}

impl Serialize for StyledProtocol<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (p, n) = (self.protocol, self.names);
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("protocol", &p.number)?;
        map.serialize_entry("name", &p.name)?;
        map.serialize_entry(n.subscriber_id, &p.subscriber_id)?;
        map.serialize_entry(n.professional_name, &p.professional_name)?;
        if let Some(key) = n.state_abbreviation {
            map.serialize_entry(key, &p.state_abbreviation)?;
        }
        map.serialize_entry(n.professional_council, &p.professional_council)?;
        map.serialize_entry(
            n.professional_council_number,
            &p.professional_council_number,
        )?;
        map.serialize_entry("status", &p.status)?;
        map.serialize_entry(n.id_on_health_insurer, &p.authorization)?;
        map.serialize_entry(n.auth_type, &p.auth_type)?;
        map.serialize_entry(n.solicitation_date, &p.requested_on)?;
        map.serialize_entry(n.analysis_date, &p.analyzed_on)?;
        map.end()
    }
}

/// The 201 body of the attachments and request endpoints (always camelCase, no dates).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProtocolReceipt<'a> {
    protocol: &'a str,
    name: &'a str,
    subscriber_id: &'a str,
    professional_name: &'a str,
    state_abbreviation: &'a str,
    professional_council: &'a str,
    professional_council_number: &'a str,
    status: &'a str,
    id_on_health_insurer: &'a str,
    auth_type: &'a str,
}

impl<'a> From<&'a Protocol> for ProtocolReceipt<'a> {
    fn from(p: &'a Protocol) -> Self {
        ProtocolReceipt {
            protocol: &p.number,
            name: &p.name,
            subscriber_id: &p.subscriber_id,
            professional_name: &p.professional_name,
            state_abbreviation: &p.state_abbreviation,
            professional_council: &p.professional_council,
            professional_council_number: &p.professional_council_number,
            status: &p.status,
            id_on_health_insurer: &p.authorization,
            auth_type: &p.auth_type,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PageBody<T> {
    pub(super) items: T,
    pub(super) has_next: bool,
    pub(super) remaining_records: u64,
}
