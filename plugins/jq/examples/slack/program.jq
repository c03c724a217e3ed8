# Slack mrkdwn treats &, < and > as markup: escape them in event data.
def esc: split("&") | join("&amp;") | split("<") | join("&lt;") | split(">") | join("&gt;");
if .type | startswith("post.draft") then skip("drafts are not announced") else
  (.data.title | esc) as $title
  | {
      text: "New post: \($title)",
      blocks: [
        {type: "header", text: {type: "plain_text", text: "New post: \(.data.title)"}},
        {type: "section", text: {type: "mrkdwn", text: "*\(.data.author.name | esc)* wrote <\(.data.url)|\($title)>"}},
        {type: "section", fields: [
          {type: "mrkdwn", text: "*Words*\n\(.data.words)"},
          {type: "mrkdwn", text: "*Tags*\n\(.data.tags | map(esc) | join(", "))"}
        ]},
        {type: "context", elements: [{type: "mrkdwn", text: "`\(.type)` · \(.id) · \(.timestamp)"}]}
      ]
    }
end
