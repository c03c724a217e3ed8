{
  username: "Switchyard",
  embeds: [{
    title: .data.title,
    url: .data.url,
    description: (.data.summary // "" | .[:200]),
    color: 5814783,
    fields: [
      {name: "Author", value: .data.author.name, inline: true},
      {name: "Words", value: (.data.words | tostring), inline: true}
    ],
    footer: {text: .type},
    timestamp: .timestamp
  }]
}
