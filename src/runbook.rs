//! The runbook (`/runbook`): docs/runbook.md, compiled in and served as HTML, so that every
//! alert's `runbook_url` resolves to the runbook of the version that is running, with no site to
//! publish. Each heading's `id` is the anchor GitHub gives it, so the same links work on a copy of
//! the repository too.

use std::sync::LazyLock;

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

const SOURCE: &str = include_str!("../docs/runbook.md");

/// The page, rendered once at its first request.
pub static PAGE: LazyLock<String> = LazyLock::new(|| render(SOURCE));

/// Renders Markdown as a whole HTML page whose headings carry their anchors.
pub fn render(markdown: &str) -> String {
    let mut events: Vec<Event<'_>> = Parser::new_ext(markdown, Options::ENABLE_TABLES).collect();
    // A heading's anchor comes from its text, which follows its start.
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading { .. }) = &events[i] {
            let mut text = String::new();
            for event in &events[i + 1..] {
                match event {
                    Event::End(TagEnd::Heading(_)) => break,
                    Event::Text(t) | Event::Code(t) => text.push_str(t),
                    _ => {}
                }
            }
            if let Event::Start(Tag::Heading { id, .. }) = &mut events[i] {
                *id = Some(CowStr::from(anchor(&text)));
            }
        }
        i += 1;
    }
    // Links to the repository's other files (`aws.md#…`, `../deploy/…`) resolve on a copy of the
    // repository, not on the exporter: served, they keep their text and lose the link.
    let mut dropped = false;
    let events = events.into_iter().filter(|event| match event {
        Event::Start(Tag::Link { dest_url, .. }) => {
            dropped = !(dest_url.starts_with('#') || dest_url.contains("://") || dest_url.starts_with("mailto:"));
            !dropped
        }
        Event::End(TagEnd::Link) => !std::mem::take(&mut dropped),
        _ => true,
    });
    let mut body = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut body, events);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>CodePipeline Exporter runbook</title>\n\
         <style>body{{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em;line-height:1.45}}\
         pre{{background:#f4f4f4;padding:.6em;overflow-x:auto}}code{{font-size:.95em}}\
         h2{{border-top:1px solid #ddd;padding-top:.6em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .5em}}</style>\n\
         </head>\n<body>\n{body}</body>\n</html>\n"
    )
}

/// GitHub's anchor of a heading: lower case, spaces as hyphens, and only letters, digits, `-`
/// and `_` kept.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_carry_githubs_anchors() {
        assert_eq!(anchor("CodePipelineStageFailed"), "codepipelinestagefailed");
        assert_eq!(anchor("Runbook links (Helm, kustomize)"), "runbook-links-helm-kustomize");
        let page = render(
            "# Alerts\n\n## CodePipelineStageFailed\nRun `aws codepipeline get-pipeline-state`; see [IAM](aws.md#iam), [below](#x) and [AWS](https://aws.amazon.com/).\n",
        );
        assert!(page.contains("see IAM, <a href=\"#x\">below</a> and <a href=\"https://aws.amazon.com/\">AWS</a>."), "{page}");
        assert!(page.contains("<h2 id=\"codepipelinestagefailed\">CodePipelineStageFailed</h2>"), "{page}");
        assert!(page.contains("<h1 id=\"alerts\">Alerts</h1>"), "{page}");
        assert!(page.contains("<code>aws codepipeline get-pipeline-state</code>"), "{page}");
    }
}
