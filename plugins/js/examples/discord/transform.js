function transform(event) {
  const { title, url, summary, words, author } = event.data;
  return {
    username: "Switchyard",
    embeds: [{
      title,
      url,
      description: (summary ?? "").slice(0, 200),
      color: 5814783,
      fields: [
        { name: "Author", value: author.name, inline: true },
        { name: "Words", value: String(words), inline: true },
      ],
      footer: { text: event.type },
      timestamp: event.timestamp,
    }],
  };
}
