// Slack mrkdwn treats &, < and > as markup: escape them in event data.
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function transform(event) {
  if (event.type.startsWith("post.draft")) return skip("drafts are not announced");
  const { title, url, words, tags, author } = event.data;
  return {
    text: `New post: ${esc(title)}`,
    blocks: [
      { type: "header", text: { type: "plain_text", text: `New post: ${title}` } },
      { type: "section", text: { type: "mrkdwn", text: `*${esc(author.name)}* wrote <${url}|${esc(title)}>` } },
      { type: "section", fields: [
        { type: "mrkdwn", text: `*Words*\n${words}` },
        { type: "mrkdwn", text: `*Tags*\n${tags.map(esc).join(", ")}` },
      ] },
      { type: "context", elements: [{ type: "mrkdwn", text: `\`${event.type}\` · ${event.id} · ${event.timestamp}` }] },
    ],
  };
}
